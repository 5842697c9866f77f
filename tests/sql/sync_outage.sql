-- tests/sql/sync_outage.sql - what the app writes on the backup during the
-- outage in the sync tests: every kind of change on every kind of table.
-- Run on the backup after capture. A different time zone than the sync
-- sessions (UTC): before-images must still compare equal.
SET TimeZone = 'America/New_York';

-- parent/child: insert, update, delete (cascading to children)
INSERT INTO parent VALUES (100, 'new parent'), (101, 'another');
UPDATE parent SET name = 'renamed one' WHERE id = 1;
DELETE FROM parent WHERE id = 2;                       -- its children go too
INSERT INTO child (parent_id, note, amount) VALUES (100, 'for the new parent', 10.5), (101, NULL, NULL);
UPDATE child SET amount = amount + 1000, note = NULL WHERE id IN (3, 4);
DELETE FROM child WHERE id = 5;
-- insert then delete: no net change
INSERT INTO child (parent_id, note) VALUES (3, 'short-lived');
DELETE FROM child WHERE note = 'short-lived';
-- update, then back to the original: no net change
UPDATE parent SET name = 'temp' WHERE id = 7;
UPDATE parent SET name = 'parent 7' WHERE id = 7;

-- composite key: insert, update, delete, key change
INSERT INTO composite VALUES ('mars', 1, 'red');
UPDATE composite SET val = 'changed' WHERE region = 'us' AND num = 1;
DELETE FROM composite WHERE region = 'eu' AND num = 2;
UPDATE composite SET region = 'asia', num = 99 WHERE region = 'eu' AND num = 3;

-- key updates: a -> a2 (then changed again), c deleted and b renamed to c
UPDATE rekey SET code = 'a2' WHERE code = 'a';
UPDATE rekey SET payload = 'moved and changed' WHERE code = 'a2';
DELETE FROM rekey WHERE code = 'c';
UPDATE rekey SET code = 'c' WHERE code = 'b';

-- jsonb, bytea, NULLs
INSERT INTO docs (body, blob, tags, feeling, span, at)
    VALUES ('{"new": true, "list": [1, 2, 3]}', '\x00ff10', NULL, 'happy', '1 day 2 hours', now()),
           (NULL, NULL, NULL, NULL, NULL, NULL);
UPDATE docs SET body = body || '{"edited": "yes \"quoted\""}', blob = NULL WHERE id = 1;
UPDATE docs SET blob = '\xdeadbeef', tags = ARRAY['x', NULL] WHERE id = 2;
UPDATE docs SET at = '2030-06-01 08:30:00+02' WHERE id = 3;
DELETE FROM docs WHERE id = 4;

-- no key
INSERT INTO nokey VALUES (11, 'row 11'), (NULL, NULL);
DELETE FROM nokey WHERE a = 3;

-- truncate
TRUNCATE trunc;
INSERT INTO trunc VALUES (1, 'after truncate'), (50, 'new');

-- a second schema
UPDATE other.things SET v = 'changed' WHERE id = 1;
