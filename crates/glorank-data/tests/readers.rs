//! Reader tests on fixture lines written here (no dataset file is shipped): correct parsing,
//! and a clear error naming the file, line and field for every kind of malformed input.

use glorank_data::{
    CsvConfig, DataError, read_amazon_csv, read_csv, read_implicit, read_ml1m, read_ml100k,
};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `files` (name, bytes) into a fresh temporary folder.
fn folder(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    dir
}

const ML1M_RATINGS: &[u8] = b"1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978300000\n";
// Latin-1 title: 0xE9 is e-acute.
const ML1M_MOVIES: &[u8] = b"1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::Cit\xe9 (1996)::Animation|Children's|Musical\n5::Unrated (1990)::Comedy\n";
const ML1M_USERS: &[u8] = b"1::F::1::10::48067\n2::M::56::16::70072\n";

fn ml1m(ratings: &[u8], movies: &[u8], users: &[u8]) -> tempfile::TempDir {
    folder(&[
        ("ratings.dat", ratings),
        ("movies.dat", movies),
        ("users.dat", users),
    ])
}

/// Asserts a parse error at `line` on `field` of the file named `file`.
fn assert_parse(err: DataError, file: &str, line: usize, field: &str) {
    match &err {
        DataError::Parse {
            path,
            line: l,
            field: f,
            ..
        } => {
            assert!(path.ends_with(file), "{err}");
            assert_eq!((*l, f.as_str()), (line, field), "{err}");
        }
        other => panic!("expected a parse error at {file}:{line} `{field}`, got: {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&format!(":{line}:")) && text.contains(field),
        "{text}"
    );
}

#[test]
fn ml1m_parses_ratings_titles_and_users() {
    let dir = ml1m(ML1M_RATINGS, ML1M_MOVIES, ML1M_USERS);
    let raw = read_ml1m(dir.path()).unwrap();
    assert_eq!(raw.user_ids, ["1", "2"]);
    assert_eq!(raw.item_ids, ["1193", "661"]);
    assert_eq!(raw.interactions.len(), 3);
    assert_eq!(raw.interactions[1].rating, 3.0);
    assert_eq!(raw.interactions[1].timestamp, 978302109);
    let f = raw.item_features.unwrap();
    assert_eq!(f.titles[1], "Cité");
    assert_eq!(f.years[1], Some(1996));
    assert_eq!(f.genres[1].len(), 3);
    let names: Vec<&str> = f.genres[1]
        .iter()
        .map(|&g| f.genre_names[g as usize].as_str())
        .collect();
    assert_eq!(names, ["Animation", "Children's", "Musical"]);
    let u = raw.user_features.unwrap();
    let age = &u.fields[1];
    assert_eq!(age.vocabulary[age.values[1] as usize], "56+");
    let occ = &u.fields[2];
    assert_eq!(occ.vocabulary[occ.values[0] as usize], "K-12 student");
}

#[test]
fn ml1m_bad_separator_names_the_missing_field() {
    let dir = ml1m(
        b"1::1193::5::978300760\n1,661,3,978302109\n",
        ML1M_MOVIES,
        ML1M_USERS,
    );
    assert_parse(read_ml1m(dir.path()).unwrap_err(), "ratings.dat", 2, "item");
}

#[test]
fn ml1m_non_numeric_and_out_of_range() {
    let dir = ml1m(
        b"1::1193::5::978300760\n1::661::x::978302109\n",
        ML1M_MOVIES,
        ML1M_USERS,
    );
    assert_parse(
        read_ml1m(dir.path()).unwrap_err(),
        "ratings.dat",
        2,
        "rating",
    );
    let dir = ml1m(b"1::1193::6::978300760\n", ML1M_MOVIES, ML1M_USERS);
    let err = read_ml1m(dir.path()).unwrap_err();
    assert!(err.to_string().contains("out of range"), "{err}");
    assert_parse(err, "ratings.dat", 1, "rating");
    let dir = ml1m(b"1::1193::5::soon\n", ML1M_MOVIES, ML1M_USERS);
    assert_parse(
        read_ml1m(dir.path()).unwrap_err(),
        "ratings.dat",
        1,
        "timestamp",
    );
    let dir = ml1m(
        ML1M_RATINGS,
        ML1M_MOVIES,
        b"1::F::1::10::48067\n2::X::56::16::70072\n",
    );
    assert_parse(read_ml1m(dir.path()).unwrap_err(), "users.dat", 2, "gender");
    let dir = ml1m(ML1M_RATINGS, ML1M_MOVIES, b"1::F::2::10::48067\n");
    assert_parse(read_ml1m(dir.path()).unwrap_err(), "users.dat", 1, "age");
    let dir = ml1m(ML1M_RATINGS, ML1M_MOVIES, b"1::F::1::21::48067\n");
    assert_parse(
        read_ml1m(dir.path()).unwrap_err(),
        "users.dat",
        1,
        "occupation",
    );
}

#[test]
fn ml1m_too_many_fields_and_duplicate_ids() {
    let dir = ml1m(b"1::1193::5::978300760::9\n", ML1M_MOVIES, ML1M_USERS);
    assert_parse(
        read_ml1m(dir.path()).unwrap_err(),
        "ratings.dat",
        1,
        "end of line",
    );
    let dir = ml1m(
        ML1M_RATINGS,
        b"1193::A (1975)::Drama\n1193::B (1975)::Drama\n",
        ML1M_USERS,
    );
    let err = read_ml1m(dir.path()).unwrap_err();
    assert!(err.to_string().contains("first on line 1"), "{err}");
    assert_parse(err, "movies.dat", 2, "item");
}

#[test]
fn missing_and_empty_files() {
    let dir = folder(&[("ratings.dat", ML1M_RATINGS), ("users.dat", ML1M_USERS)]);
    match read_ml1m(dir.path()).unwrap_err() {
        DataError::MissingFile { path, .. } => assert!(path.ends_with("movies.dat")),
        other => panic!("{other}"),
    }
    let dir = ml1m(b"\n\n", ML1M_MOVIES, ML1M_USERS);
    match read_ml1m(dir.path()).unwrap_err() {
        DataError::EmptyFile { path } => assert!(path.ends_with("ratings.dat")),
        other => panic!("{other}"),
    }
    assert!(matches!(
        read_amazon_csv(Path::new("/nonexistent/ratings_Books.csv")),
        Err(DataError::MissingFile { .. })
    ));
}

#[test]
fn invalid_utf8_and_latin1_name_the_line() {
    let dir = ml1m(
        b"1::1193::5::978300760\n1::66\xff1::3::978302109\n",
        ML1M_MOVIES,
        ML1M_USERS,
    );
    match read_ml1m(dir.path()).unwrap_err() {
        DataError::Encoding {
            path,
            line,
            encoding,
            byte_offset,
        } => {
            assert!(path.ends_with("ratings.dat"));
            assert_eq!((line, encoding, byte_offset), (2, "UTF-8", 5));
        }
        other => panic!("{other}"),
    }
    // A NUL byte (as in a UTF-16 file) or a C1 control byte is not Latin-1 text.
    let dir = ml1m(ML1M_RATINGS, b"1193::A\x00B (1975)::Drama\n", ML1M_USERS);
    match read_ml1m(dir.path()).unwrap_err() {
        DataError::Encoding { line, encoding, .. } => assert_eq!((line, encoding), (1, "Latin-1")),
        other => panic!("{other}"),
    }
    let dir = ml1m(
        ML1M_RATINGS,
        b"1193::Quote \x93x\x94 (1975)::Drama\n",
        ML1M_USERS,
    );
    assert!(matches!(
        read_ml1m(dir.path()),
        Err(DataError::Encoding { .. })
    ));
}

fn ml100k_item(id: u32, title: &str, flags: &str) -> String {
    format!("{id}|{title}|01-Jan-1995||http://x|{flags}\n")
}

#[test]
fn ml100k_parses_and_rejects_bad_flags() {
    let flags = "0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|1|0|0";
    let items = ml100k_item(242, "Kolya (1996)", flags)
        + &ml100k_item(302, "L.A. Confidential (1997)", flags);
    let dir = folder(&[
        (
            "u.data",
            b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n",
        ),
        ("u.item", items.as_bytes()),
        (
            "u.user",
            b"196|49|M|writer|55105\n186|39|F|executive|00000\n",
        ),
    ]);
    let raw = read_ml100k(dir.path()).unwrap();
    let f = raw.item_features.unwrap();
    assert_eq!(f.years[0], Some(1995)); // release date wins over the title year
    assert_eq!(f.genres[0], vec![1, 2, 16]);
    let u = raw.user_features.unwrap();
    assert_eq!(
        u.fields[1].vocabulary[u.fields[1].values[0] as usize],
        "45-49"
    );

    let bad = ml100k_item(242, "Kolya (1996)", "0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|2|0|0");
    let dir = folder(&[
        ("u.data", b"196\t242\t3\t881250949\n"),
        ("u.item", bad.as_bytes()),
        ("u.user", b"196|49|M|writer|55105\n"),
    ]);
    assert_parse(
        read_ml100k(dir.path()).unwrap_err(),
        "u.item",
        1,
        "genre Thriller",
    );

    let dir = folder(&[
        ("u.data", b"196 242 3 881250949\n"),
        ("u.item", items.as_bytes()),
        ("u.user", b"196|49|M|writer|55105\n"),
    ]);
    assert_parse(read_ml100k(dir.path()).unwrap_err(), "u.data", 1, "item");
}

#[test]
fn amazon_csv_parses_with_optional_header() {
    let dir = folder(&[(
        "ratings_Books.csv",
        b"user,item,rating,timestamp\nA1,0001,5.0,1360000000\nA2,0001,3.0,1360000001\n",
    )]);
    let raw = read_amazon_csv(&dir.path().join("ratings_Books.csv")).unwrap();
    assert_eq!(raw.interactions.len(), 2);
    assert_eq!(raw.item_ids, ["0001"]);

    let dir = folder(&[("r.csv", b"A1,0001,5.0,1360000000\nA2;0001;3.0;1360000001\n")]);
    assert_parse(
        read_amazon_csv(&dir.path().join("r.csv")).unwrap_err(),
        "r.csv",
        2,
        "item",
    );
    let dir = folder(&[("r.csv", b"A1,0001,0,1360000000\n")]);
    assert_parse(
        read_amazon_csv(&dir.path().join("r.csv")).unwrap_err(),
        "r.csv",
        1,
        "rating",
    );
    let dir = folder(&[("r.csv", b"A1,,4,1360000000\n")]);
    assert_parse(
        read_amazon_csv(&dir.path().join("r.csv")).unwrap_err(),
        "r.csv",
        1,
        "item",
    );
    let dir = folder(&[("r.csv", b"A1,0001,4,13600\xff0000\n")]);
    assert!(matches!(
        read_amazon_csv(&dir.path().join("r.csv")),
        Err(DataError::Encoding { line: 1, .. })
    ));
    let dir = folder(&[("r.csv", b"")]);
    assert!(matches!(
        read_amazon_csv(&dir.path().join("r.csv")),
        Err(DataError::EmptyFile { .. })
    ));
}

#[test]
fn generic_csv_uses_configured_columns() {
    let dir = folder(&[(
        "log.tsv",
        b"ts\tuid\tiid\tscore\n10\tu1\tx\t4.5\n11\tu1\t\"y\"\t2\n",
    )]);
    let cfg = CsvConfig::default()
        .with_columns("uid", "iid", Some("score"), Some("ts"))
        .with_delimiter(b'\t')
        .with_rating_range(0.0, 5.0);
    let raw = read_csv(&dir.path().join("log.tsv"), &cfg).unwrap();
    assert_eq!(raw.item_ids, ["x", "y"]);
    assert_eq!(raw.interactions[0].rating, 4.5);
    assert_eq!(raw.interactions[1].timestamp, 11);
    assert!(!raw.implicit);

    let implicit = CsvConfig::default()
        .with_columns("uid", "iid", None, None)
        .with_delimiter(b'\t');
    let raw = read_csv(&dir.path().join("log.tsv"), &implicit).unwrap();
    assert!(raw.implicit);
    assert_eq!(raw.interactions[1].timestamp, 1);
}

#[test]
fn generic_csv_header_errors() {
    let dir = folder(&[("d.csv", b"user,item,user\n1,2,3\n")]);
    match read_csv(&dir.path().join("d.csv"), &CsvConfig::default()).unwrap_err() {
        DataError::DuplicateHeader { line, column, .. } => {
            assert_eq!((line, column.as_str()), (1, "user"))
        }
        other => panic!("{other}"),
    }
    let dir = folder(&[("d.csv", b"user,item,stars,timestamp\n1,2,3,4\n")]);
    assert_parse(
        read_csv(&dir.path().join("d.csv"), &CsvConfig::default()).unwrap_err(),
        "d.csv",
        1,
        "header",
    );
    let dir = folder(&[("d.csv", b"user,item,rating,timestamp\n1,2,3\n")]);
    assert_parse(
        read_csv(&dir.path().join("d.csv"), &CsvConfig::default()).unwrap_err(),
        "d.csv",
        2,
        "timestamp",
    );
    let dir = folder(&[("d.csv", b"user,item,rating,timestamp\n")]);
    assert!(matches!(
        read_csv(&dir.path().join("d.csv"), &CsvConfig::default()),
        Err(DataError::EmptyFile { .. })
    ));
    let bad = CsvConfig::default().with_rating_range(5.0, 1.0);
    assert!(matches!(
        read_csv(&dir.path().join("d.csv"), &bad),
        Err(DataError::InvalidConfig { .. })
    ));
}

#[test]
fn implicit_format_reads_folders_and_gzip() {
    let dir = folder(&[
        ("train.txt", b"0 10 11 12\n1 11\n"),
        ("test.txt", b"0 13\n1\n"),
    ]);
    let raw = read_implicit(dir.path()).unwrap();
    assert!(raw.implicit);
    assert_eq!(raw.interactions.len(), 5);
    // User 0's test item comes after its train items.
    let last = raw
        .interactions
        .iter()
        .filter(|x| x.user == 0)
        .max_by_key(|x| x.timestamp)
        .unwrap();
    assert_eq!(raw.item_ids[last.item as usize], "13");

    let gz: PathBuf = dir.path().join("extra.txt.gz");
    let mut enc = flate2_writer(&gz);
    enc.write_all(b"7 1 2 3\n").unwrap();
    enc.finish().unwrap();
    assert_eq!(read_implicit(&gz).unwrap().interactions.len(), 3);

    let dir = folder(&[("train.txt", b"0 10 x1\n")]);
    assert_parse(
        read_implicit(dir.path()).unwrap_err(),
        "train.txt",
        1,
        "item 2",
    );
    let dir = folder(&[("other.txt", b"0 1\n")]);
    assert!(matches!(
        read_implicit(dir.path()),
        Err(DataError::MissingFile { .. })
    ));
}

#[test]
fn a_ratings_file_read_as_implicit_lists_is_refused() {
    // MovieLens-100K's u.data: user, item, rating, timestamp.
    let lines: String = (0..20)
        .map(|k| {
            format!(
                "{}\t{}\t{}\t{}\n",
                190 + k,
                240 + k,
                1 + k % 5,
                881_250_949 + k
            )
        })
        .collect();
    let dir = folder(&[("train.txt", lines.as_bytes())]);
    assert_parse(
        read_implicit(dir.path()).unwrap_err(),
        "train.txt",
        1,
        "format",
    );
}

#[test]
fn a_file_without_newlines_is_an_error_not_an_endless_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("u.data");
    // 17 MiB of digits and no newline: longer than the 16 MiB line limit.
    std::fs::write(&path, vec![b'7'; 17 << 20]).unwrap();
    let e = read_ml100k(dir.path()).unwrap_err().to_string();
    assert!(e.contains("u.data") && e.contains("limit"), "{e}");
    let csv = dir.path().join("log.csv");
    std::fs::write(&csv, vec![b'7'; 17 << 20]).unwrap();
    let e = read_csv(&csv, &CsvConfig::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("log.csv") && e.contains("longer than"), "{e}");
}

/// A gzip writer (flate2 is a dependency of the crate under test; reuse its encoder).
fn flate2_writer(path: &Path) -> flate2::write::GzEncoder<std::fs::File> {
    flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    )
}

#[test]
fn ratings_of_unlisted_items_and_users_name_their_line() {
    let flags = "0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|1|0|0";
    let items = ml100k_item(242, "Kolya (1996)", flags);
    let users = b"196|49|M|writer|55105\n186|39|F|executive|00000\n";
    // Item 302 (line 2) is rated but not in u.item.
    let ratings = b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n186\t242\t3\t891717743\n";
    let dir = folder(&[
        ("u.data", ratings),
        ("u.item", items.as_bytes()),
        ("u.user", users),
    ]);
    let e = read_ml100k(dir.path()).unwrap_err();
    assert!(e.to_string().contains("u.item"), "{e}");
    assert_parse(e, "u.data", 2, "item");
    // User 7 (line 3) is rated but not in u.user.
    let both = ml100k_item(242, "Kolya (1996)", flags) + &ml100k_item(302, "L.A. (1997)", flags);
    let ratings = b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n7\t242\t3\t891717743\n";
    let dir = folder(&[
        ("u.data", ratings),
        ("u.item", both.as_bytes()),
        ("u.user", users),
    ]);
    assert_parse(read_ml100k(dir.path()).unwrap_err(), "u.data", 3, "user");
    // MovieLens-1M: movie 5 is listed but not rated (fine); a rated movie must be listed.
    let dir = ml1m(
        b"1::1193::5::978300760\n2::999::4::978300000\n",
        ML1M_MOVIES,
        ML1M_USERS,
    );
    assert_parse(read_ml1m(dir.path()).unwrap_err(), "ratings.dat", 2, "item");
}

/// Endless inputs (a device or a FIFO that never sends a newline) end with an error at the
/// line limit, naming the file, within seconds and bounded memory.
#[cfg(unix)]
#[test]
fn endless_inputs_end_with_an_error_naming_the_file() {
    let flags = "0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|1|0|0";
    for endless in ["u.data", "u.item", "u.user"] {
        let items = ml100k_item(242, "Kolya (1996)", flags);
        let files: Vec<(&str, &[u8])> = vec![
            ("u.data", b"196\t242\t3\t881250949\n"),
            ("u.item", items.as_bytes()),
            ("u.user", b"196|49|M|writer|55105\n"),
        ];
        let files: Vec<_> = files.into_iter().filter(|(n, _)| *n != endless).collect();
        let dir = folder(&files);
        std::os::unix::fs::symlink("/dev/zero", dir.path().join(endless)).unwrap();
        let t0 = std::time::Instant::now();
        let e = read_ml100k(dir.path()).unwrap_err().to_string();
        assert!(e.contains(endless) && e.contains("limit"), "{e}");
        assert!(t0.elapsed().as_secs() < 30, "{endless}: {:?}", t0.elapsed());
    }
}
