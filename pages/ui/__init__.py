"""What pages are built from, one module per job: the shell (error boundary, fragments, presentation mode), the
sidebar workspace, deep links, kept widget state, parameter controls, charts and metric cards. No OOD math here."""
