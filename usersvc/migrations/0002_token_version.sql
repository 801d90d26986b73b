-- token_version is carried in every token the user gets (claim "ver"); a
-- password or role change raises it, and with it the user's older tokens
-- stop working (see auth and the UserTokensRevoked event).
ALTER TABLE users ADD COLUMN token_version BIGINT NOT NULL DEFAULT 1;
