"""Reports: text tables, plotly figures, markdown/HTML writers and image grids.

Importing this package is cheap: nothing heavy is imported here.
"""
