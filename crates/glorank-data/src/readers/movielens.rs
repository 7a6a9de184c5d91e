//! MovieLens readers: ML-1M (`::`-separated `.dat` files) and ML-100K (`u.data`, `u.item`,
//! `u.user`).
//!
//! Ratings files are read as UTF-8 (they are ASCII); titles are Latin-1, as GroupLens ships
//! them. Items missing from the metadata file keep unknown features; metadata rows of items
//! without ratings are skipped.

use super::text::{Encoding, find_file, for_each_line, parse_num, parse_rating, split_exact};
use crate::raw::{CategoricalField, Interaction, Interner, ItemFeatures, RawDataset, UserFeatures};
use crate::{DataError, Result};
use std::collections::HashMap;
use std::path::Path;

/// MovieLens ratings are whole stars from 1 to 5.
const ML_RATING_RANGE: (f32, f32) = (1.0, 5.0);

/// ML-1M age codes and their labels (from the ML-1M README); ML-100K ages are bucketed alike.
const AGE_BUCKETS: [(u32, &str); 7] = [
    (1, "Under 18"),
    (18, "18-24"),
    (25, "25-34"),
    (35, "35-44"),
    (45, "45-49"),
    (50, "50-55"),
    (56, "56+"),
];

/// ML-1M occupation codes 0..=20 (from the ML-1M README).
const ML1M_OCCUPATIONS: [&str; 21] = [
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
];

/// The 19 genre flags of ML-100K's `u.item`, in column order.
const ML100K_GENRES: [&str; 19] = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
];

/// Splits `"Title (1995)"` into `("Title", Some(1995))`.
pub(crate) fn split_title_year(title: &str) -> (String, Option<u16>) {
    let t = title.trim();
    if let Some(open) = t.rfind('(')
        && t.ends_with(')')
    {
        let inner = &t[open + 1..t.len() - 1];
        if inner.len() == 4
            && let Ok(y) = inner.parse::<u16>()
        {
            return (t[..open].trim().to_string(), Some(y));
        }
    }
    (t.to_string(), None)
}

/// Reads one ratings file of `sep`-separated `user, item, rating, timestamp` rows.
/// The ratings of a MovieLens ratings file, and the line on which each user and each item
/// (by dense index) is first rated.
struct Ratings {
    interactions: Vec<Interaction>,
    user_lines: Vec<usize>,
    item_lines: Vec<usize>,
}

fn read_ratings(
    path: &Path,
    sep: &str,
    hint: &str,
    users: &mut Interner,
    items: &mut Interner,
) -> Result<Ratings> {
    let mut out = Ratings {
        interactions: Vec::new(),
        user_lines: Vec::new(),
        item_lines: Vec::new(),
    };
    let names = ["user", "item", "rating", "timestamp"];
    for_each_line(path, Encoding::Utf8, hint, |ln, line| {
        let f = split_exact(path, ln, line, sep, &names)?;
        let user: u64 = parse_num(path, ln, "user", f[0])?;
        let item: u64 = parse_num(path, ln, "item", f[1])?;
        let rating = parse_rating(path, ln, f[2], ML_RATING_RANGE)?;
        let timestamp: i64 = parse_num(path, ln, "timestamp", f[3])?;
        let user = users.intern(&user.to_string());
        let item = items.intern(&item.to_string());
        if user as usize == out.user_lines.len() {
            out.user_lines.push(ln);
        }
        if item as usize == out.item_lines.len() {
            out.item_lines.push(ln);
        }
        out.interactions.push(Interaction {
            user,
            item,
            rating,
            timestamp,
        });
        Ok(())
    })?;
    Ok(out)
}

/// Refuses ratings of an id that the side file (`u.item`, `movies.dat`...) does not list:
/// the error names the ratings line that first rates such an id.
fn check_listed(
    ratings: &Path,
    side: &Path,
    field: &str,
    ids: &[String],
    first_lines: &[usize],
    listed: &HashMap<u64, usize>,
) -> Result<()> {
    let unlisted = |id: &String| id.parse::<u64>().map_or(true, |v| !listed.contains_key(&v));
    // Ids are interned in the order the ratings first name them, so the first unlisted id
    // is the one whose line comes first.
    if let Some((id, &ln)) = ids.iter().zip(first_lines).find(|(id, _)| unlisted(id)) {
        let missing = ids.iter().filter(|id| unlisted(id)).count();
        return Err(DataError::parse(
            ratings,
            ln,
            field,
            format!(
                "{field} {id} is rated but not listed in {} ({missing} rated {field}s are missing from it)",
                side.display()
            ),
        ));
    }
    Ok(())
}

/// Remembers where an id was first defined, to reject a second definition.
fn check_unique(
    seen: &mut HashMap<u64, usize>,
    path: &Path,
    ln: usize,
    field: &str,
    id: u64,
) -> Result<()> {
    if let Some(first) = seen.insert(id, ln) {
        return Err(DataError::parse(
            path,
            ln,
            field,
            format!("id {id} is defined again (first on line {first})"),
        ));
    }
    Ok(())
}

/// Age-bucket label of a raw age in years (ML-100K).
fn age_bucket(age: u32) -> &'static str {
    AGE_BUCKETS
        .iter()
        .rev()
        .find(|(lo, _)| age >= *lo)
        .map(|(_, l)| *l)
        .unwrap_or(AGE_BUCKETS[0].1)
}

/// Fresh user attributes `gender`, `age`, `occupation` for `n` users.
fn user_fields(n: usize) -> UserFeatures {
    UserFeatures {
        fields: ["gender", "age", "occupation"]
            .iter()
            .map(|name| CategoricalField::new(name, n))
            .collect(),
    }
}

/// Parses a gender field (`M` or `F`).
fn parse_gender<'a>(path: &Path, ln: usize, text: &'a str) -> Result<&'a str> {
    match text.trim() {
        g @ ("M" | "F") => Ok(g),
        other => Err(DataError::parse(
            path,
            ln,
            "gender",
            format!("expected M or F, found {other:?}"),
        )),
    }
}

/// Reads MovieLens-1M from a directory holding `ratings.dat`, `movies.dat` and `users.dat`
/// (each may also be gzip-compressed as `NAME.gz`).
///
/// # Errors
/// [`DataError`] naming the file, line and field of the first malformed input.
pub fn read_ml1m(dir: &Path) -> Result<RawDataset> {
    let hint = "MovieLens-1M: the ml-1m folder from GroupLens";
    let mut users = Interner::default();
    let mut items = Interner::default();
    let ratings_path = find_file(dir, "ratings.dat");
    let ratings = read_ratings(&ratings_path, "::", hint, &mut users, &mut items)?;

    let movies = find_file(dir, "movies.dat");
    let mut feats = ItemFeatures::unknown(items.len(), Vec::new());
    let mut genre_vocab = CategoricalField::new("genre", 0);
    genre_vocab.vocabulary.clear();
    let mut seen = HashMap::new();
    for_each_line(&movies, Encoding::Latin1, hint, |ln, line| {
        let f = split_exact(&movies, ln, line, "::", &["item", "title", "genres"])?;
        let id: u64 = parse_num(&movies, ln, "item", f[0])?;
        check_unique(&mut seen, &movies, ln, "item", id)?;
        let Some(item) = items.get(&id.to_string()) else {
            return Ok(());
        };
        let (title, year) = split_title_year(f[1]);
        let mut genres: Vec<u16> = f[2]
            .split('|')
            .map(str::trim)
            .filter(|g| !g.is_empty() && *g != "(no genres listed)")
            .map(|g| genre_vocab.code(g) as u16)
            .collect();
        genres.sort_unstable();
        genres.dedup();
        let i = item as usize;
        feats.titles[i] = title;
        feats.years[i] = year;
        feats.genres[i] = genres;
        Ok(())
    })?;
    feats.genre_names = genre_vocab.vocabulary;
    check_listed(
        &ratings_path,
        &movies,
        "item",
        items.ids(),
        &ratings.item_lines,
        &seen,
    )?;

    let users_path = find_file(dir, "users.dat");
    let mut uf = user_fields(users.len());
    let mut seen = HashMap::new();
    for_each_line(&users_path, Encoding::Latin1, hint, |ln, line| {
        let names = ["user", "gender", "age", "occupation", "zip"];
        let f = split_exact(&users_path, ln, line, "::", &names)?;
        let id: u64 = parse_num(&users_path, ln, "user", f[0])?;
        check_unique(&mut seen, &users_path, ln, "user", id)?;
        let gender = parse_gender(&users_path, ln, f[1])?;
        let age: u32 = parse_num(&users_path, ln, "age", f[2])?;
        let age = AGE_BUCKETS
            .iter()
            .find(|(code, _)| *code == age)
            .map(|(_, l)| *l)
            .ok_or_else(|| {
                DataError::parse(
                    &users_path,
                    ln,
                    "age",
                    format!("age code {age} is not one of 1, 18, 25, 35, 45, 50, 56"),
                )
            })?;
        let occ: usize = parse_num(&users_path, ln, "occupation", f[3])?;
        let occ = ML1M_OCCUPATIONS.get(occ).ok_or_else(|| {
            DataError::parse(
                &users_path,
                ln,
                "occupation",
                format!("occupation code {occ} is out of range 0..=20"),
            )
        })?;
        if let Some(u) = users.get(&id.to_string()) {
            set_user(&mut uf, u as usize, [gender, age, occ]);
        }
        Ok(())
    })?;
    check_listed(
        &ratings_path,
        &users_path,
        "user",
        users.ids(),
        &ratings.user_lines,
        &seen,
    )?;

    Ok(RawDataset {
        name: "ml-1m".into(),
        user_ids: users.into_ids(),
        item_ids: items.into_ids(),
        interactions: ratings.interactions,
        implicit: false,
        item_features: Some(feats),
        user_features: Some(uf),
    })
}

/// Sets the three MovieLens attributes of user `u`.
fn set_user(uf: &mut UserFeatures, u: usize, values: [&str; 3]) {
    for (field, v) in uf.fields.iter_mut().zip(values) {
        let code = field.code(v);
        field.values[u] = code;
    }
}

/// Reads MovieLens-100K from a directory holding `u.data`, `u.item` and `u.user`.
///
/// # Errors
/// [`DataError`] naming the file, line and field of the first malformed input.
pub fn read_ml100k(dir: &Path) -> Result<RawDataset> {
    let hint = "MovieLens-100K: the ml-100k folder from GroupLens";
    let mut users = Interner::default();
    let mut items = Interner::default();
    let ratings_path = find_file(dir, "u.data");
    let ratings = read_ratings(&ratings_path, "\t", hint, &mut users, &mut items)?;

    let item_path = find_file(dir, "u.item");
    let genre_names: Vec<String> = ML100K_GENRES.iter().map(|s| s.to_string()).collect();
    let mut feats = ItemFeatures::unknown(items.len(), genre_names);
    let mut names: Vec<String> = ["item", "title", "release date", "video release date", "url"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    names.extend(ML100K_GENRES.iter().map(|g| format!("genre {g}")));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut seen = HashMap::new();
    for_each_line(&item_path, Encoding::Latin1, hint, |ln, line| {
        let f = split_exact(&item_path, ln, line, "|", &names)?;
        let id: u64 = parse_num(&item_path, ln, "item", f[0])?;
        check_unique(&mut seen, &item_path, ln, "item", id)?;
        let mut genres = Vec::new();
        for (g, flag) in f[5..].iter().enumerate() {
            match flag.trim() {
                "1" => genres.push(g as u16),
                "0" => {}
                other => {
                    return Err(DataError::parse(
                        &item_path,
                        ln,
                        names[5 + g],
                        format!("expected 0 or 1, found {other:?}"),
                    ));
                }
            }
        }
        let Some(item) = items.get(&id.to_string()) else {
            return Ok(());
        };
        let (title, title_year) = split_title_year(f[1]);
        // Release dates look like 01-Jan-1995; fall back to the year in the title.
        let date_year = f[2]
            .rsplit('-')
            .next()
            .and_then(|y| y.trim().parse::<u16>().ok());
        let i = item as usize;
        feats.titles[i] = title;
        feats.years[i] = date_year.or(title_year);
        feats.genres[i] = genres;
        Ok(())
    })?;
    check_listed(
        &ratings_path,
        &item_path,
        "item",
        items.ids(),
        &ratings.item_lines,
        &seen,
    )?;

    let user_path = find_file(dir, "u.user");
    let mut uf = user_fields(users.len());
    let mut seen = HashMap::new();
    for_each_line(&user_path, Encoding::Latin1, hint, |ln, line| {
        let names = ["user", "age", "gender", "occupation", "zip"];
        let f = split_exact(&user_path, ln, line, "|", &names)?;
        let id: u64 = parse_num(&user_path, ln, "user", f[0])?;
        check_unique(&mut seen, &user_path, ln, "user", id)?;
        let age: u32 = parse_num(&user_path, ln, "age", f[1])?;
        let gender = parse_gender(&user_path, ln, f[2])?;
        let occ = f[3].trim();
        if occ.is_empty() {
            return Err(DataError::parse(&user_path, ln, "occupation", "is empty"));
        }
        if let Some(u) = users.get(&id.to_string()) {
            set_user(&mut uf, u as usize, [gender, age_bucket(age), occ]);
        }
        Ok(())
    })?;
    check_listed(
        &ratings_path,
        &user_path,
        "user",
        users.ids(),
        &ratings.user_lines,
        &seen,
    )?;

    Ok(RawDataset {
        name: "ml-100k".into(),
        user_ids: users.into_ids(),
        item_ids: items.into_ids(),
        interactions: ratings.interactions,
        implicit: false,
        item_features: Some(feats),
        user_features: Some(uf),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_year_split() {
        assert_eq!(
            split_title_year("Toy Story (1995)"),
            ("Toy Story".to_string(), Some(1995))
        );
        assert_eq!(
            split_title_year("City of Lost Children, The (Cité des enfants perdus, La) (1995)"),
            (
                "City of Lost Children, The (Cité des enfants perdus, La)".to_string(),
                Some(1995)
            )
        );
        assert_eq!(split_title_year("unknown"), ("unknown".to_string(), None));
    }

    #[test]
    fn age_buckets() {
        assert_eq!(age_bucket(7), "Under 18");
        assert_eq!(age_bucket(24), "18-24");
        assert_eq!(age_bucket(73), "56+");
    }
}
