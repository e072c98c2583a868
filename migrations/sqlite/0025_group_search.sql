-- PostgreSQL's 0025 gives the groups' counts a trigram index for the search. SQLite reads
-- them through its search index only while there are few groups (Store::groups_alone):
-- nothing changes here. Kept so that a version means the same schema on both.
SELECT 1;
