-- tests/sql/sync_schema.sql - the schema and starting data of the sync
-- tests (t_sync*.sh): loaded into both clusters, so that the backup starts
-- as an exact copy of the primary.
--   parent/child   a foreign key (ON DELETE CASCADE), bigserial, numeric,
--                  timestamptz
--   composite      a two-column primary key (one key gets changed)
--   rekey          a text key that gets updated
--   docs           jsonb, bytea, arrays, NULLs, an enum, a generated column
--   nokey          no primary key ([sync] no_pk)
--   trunc          truncated during the outage
--   other.things   a second schema (only synced when listed)
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');

CREATE TABLE parent (
    id int PRIMARY KEY,
    name text NOT NULL
);
CREATE TABLE child (
    id bigserial PRIMARY KEY,
    parent_id int NOT NULL REFERENCES parent (id) ON DELETE CASCADE,
    note text,
    amount numeric(12, 2),
    created timestamptz NOT NULL DEFAULT '2024-01-01 00:00:00+00'
);
CREATE INDEX ON child (parent_id);
CREATE TABLE composite (
    region text,
    num int,
    val text,
    PRIMARY KEY (region, num)
);
CREATE TABLE rekey (
    code text PRIMARY KEY,
    payload text
);
CREATE TABLE docs (
    id bigserial PRIMARY KEY,
    body jsonb,
    blob bytea,
    tags text[],
    feeling mood,
    span interval,
    at timestamptz,
    body_size int GENERATED ALWAYS AS (length(body::text)) STORED
);
CREATE TABLE nokey (
    a int,
    b text
);
CREATE TABLE trunc (
    id int PRIMARY KEY,
    v text
);
CREATE SCHEMA other;
CREATE TABLE other.things (id int PRIMARY KEY, v text);

INSERT INTO parent SELECT g, 'parent ' || g FROM generate_series(1, 20) g;
INSERT INTO child (parent_id, note, amount)
    SELECT 1 + g % 20, CASE WHEN g % 7 = 0 THEN NULL ELSE 'note ' || g END, g * 1.25
      FROM generate_series(1, 200) g;
INSERT INTO composite SELECT r, n, r || '-' || n
      FROM unnest(ARRAY['eu', 'us', 'asia']) r, generate_series(1, 10) n;
INSERT INTO rekey SELECT chr(96 + g), 'payload ' || g FROM generate_series(1, 10) g;
INSERT INTO docs (body, blob, tags, feeling, span, at)
    SELECT jsonb_build_object('n', g, 'name', 'doc ' || g, 'nested', jsonb_build_object('x', g * 2)),
           CASE WHEN g % 5 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') END,
           ARRAY['t' || g, 'u'],
           (ARRAY['sad', 'ok', 'happy'])[1 + g % 3]::mood,
           make_interval(hours => g),
           '2024-03-01 12:00:00+00'::timestamptz + g * interval '1 minute'
      FROM generate_series(1, 50) g;
INSERT INTO nokey SELECT g, 'row ' || g FROM generate_series(1, 10) g;
INSERT INTO trunc SELECT g, 'v' || g FROM generate_series(1, 10) g;
INSERT INTO other.things SELECT g, 't' || g FROM generate_series(1, 5) g;
