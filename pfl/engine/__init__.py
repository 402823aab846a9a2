"""The engine: runs any algorithm over cohorts of clients, drives rounds with Lightning."""
