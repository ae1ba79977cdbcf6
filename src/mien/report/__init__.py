"""Reports: PNG image grids, plots and HTML pages (design.md, data flow)."""
