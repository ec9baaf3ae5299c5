"""Machinery shared by the built-in tasks: model I/O per architecture, scoring, request sampling."""
