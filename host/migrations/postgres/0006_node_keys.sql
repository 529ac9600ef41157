-- Each remote node proves who it is with a key the controller issued at its
-- first enrolment; this is the SHA-256 (hex) of that key. 'in-process' marks
-- the node inside `tocsin serve`, which no remote caller can prove to be.
-- Keep in step with the other dialect's 0006.
ALTER TABLE nodes ADD COLUMN key_hash TEXT;
