-- Keys managed over the API (contract §11) have a name and show their last
-- four characters; keys made before have neither.
ALTER TABLE api_keys ADD COLUMN name text;
ALTER TABLE api_keys ADD COLUMN last4 text;
