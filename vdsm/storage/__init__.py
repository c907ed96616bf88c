"""Storage: repository, domains, pool, SPM, tasks."""
