DROP TABLE _ss_group_parts;
