DROP TABLE legacy_import_rows;
DROP TABLE legacy_imports;
DROP TABLE local_secrets;
