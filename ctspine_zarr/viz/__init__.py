"""Pictures: the statistics plots and the case viewer."""
