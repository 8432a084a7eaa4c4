"""Shared settings and the command line for Data Spine."""
