-- The time split of `glorank run` on a request log (log.split = "time"), as one SQL query
-- over the log's Parquet parts, for logs too large for one machine: run it on Spark,
-- DataFusion or DuckDB and hand each split's rows to training. Same rule as
-- glorank_data::prepare_log: with n requests, the latest ceil(0.1 n) by timestamp are test,
-- the ceil(0.1 n) before them validation (log.test_share, log.valid_share), and a row at a
-- boundary's timestamp goes to the later split. `requests` is the table of the log's rows.
WITH counted AS (
    SELECT COUNT(*) AS n FROM requests
),
ordered AS (
    SELECT timestamp, ROW_NUMBER() OVER (ORDER BY timestamp) AS k FROM requests
),
cuts AS (
    SELECT
        MIN(CASE WHEN k > n - CEIL(n * 0.1) THEN timestamp END) AS test_from,
        MIN(CASE WHEN k > n - CEIL(n * 0.1) - CEIL(n * 0.1) THEN timestamp END) AS valid_from
    FROM ordered, counted
)
SELECT
    r.*,
    CASE
        WHEN r.timestamp >= cuts.test_from THEN 'test'
        WHEN r.timestamp >= cuts.valid_from THEN 'valid'
        ELSE 'train'
    END AS split
FROM requests AS r, cuts
