"""Personal data under control: the classification of every column, what each role may read,
data-subject requests (access, export, erasure) across every store, retention, and the scan
that proves a person is gone."""
