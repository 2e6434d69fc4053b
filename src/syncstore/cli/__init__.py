"""The ``syncstore`` command line: a thin layer over the library."""
