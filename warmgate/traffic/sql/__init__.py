"""SQL traffic: the SQL driver over PostgreSQL, MySQL/MariaDB and SQLite, the read-only statement
checks, parameter binding, and the row bounds."""
