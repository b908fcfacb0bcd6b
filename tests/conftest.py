pytest_plugins = ["tests.org_fixtures", "tests.db_fixtures", "tests.temporal_fixtures", "tests.e2e_fixtures"]
