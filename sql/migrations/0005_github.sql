-- 0005_github: what the GitHub source needs beyond the initial schema.
--
-- github_etags: the ETag of every GitHub answer stored, per URL, with what the next run needs
-- when the same URL answers 304 Not Modified (the next page, the items a list held). A URL is
-- recorded only after its page was stored, so a 304 never hides a page that was not kept.
CREATE TABLE github_etags (
    integration_id  bigint      NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    url             text        NOT NULL,
    etag            text        NOT NULL,
    meta            jsonb       NOT NULL DEFAULT '{}',
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, url)
);
COMMENT ON TABLE github_etags IS 'ETags of stored GitHub answers by URL, for conditional requests.';

-- first_response_at: the first review or comment by someone other than the author (bots
-- left out), where pickup time ends. details_updated_at: the pull request's update time
-- when the commits and reviews loaded last were read, so an older page never replaces them.
ALTER TABLE pull_requests
    ADD COLUMN first_response_at  timestamptz,
    ADD COLUMN details_updated_at timestamptz;

COMMENT ON COLUMN pull_requests.pickup_time_seconds IS
    'opened -> first review or comment by someone other than the author (bots excluded)';
COMMENT ON COLUMN pull_requests.review_time_seconds IS
    'first review by someone other than the author -> merged';
COMMENT ON COLUMN pull_requests.cycle_time_seconds IS 'opened -> merged';
