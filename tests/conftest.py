pytest_plugins = ["tests.db_fixtures", "tests.temporal_fixtures", "tests.e2e_fixtures"]
