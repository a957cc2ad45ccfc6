"""Dashboards in the browser: server-rendered pages behind a login cookie, facility-scoped, in
English and 简体中文, with Plotly charts served from the installed `plotly` package."""
