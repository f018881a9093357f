"""The grid benchmark (`strata bench grid`): every strategy on three models x three
device speeds x three links. run.py drives it; cells.py measures one cell; page.py
drives Strata's page; startup.py times first answers; throttle.py calibrates the slowed
devices; stats.py and merge.py summarize; report.py writes the tables and plots."""
