"""The console's pages, one module per area. Each module has ``routes`` and, for
every page, a function of the store and the query that makes the page's
library reads (the benchmark times those beside the whole page)."""
