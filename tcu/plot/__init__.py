"""Pictures and exports of a run: timelines (.png .svg .pdf .html), CSV and Parquet.

``timeline`` records a run in bounded memory as a sink of the host; ``figure`` draws it
with matplotlib, ``html`` as one self-contained zoomable page; ``export`` streams the
decoded signals and writes the event tables; ``outputs`` ties them to the command line.
"""
