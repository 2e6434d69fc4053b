DROP TABLE _ss_shapes;
