"""Host networking: setupNetworks, persistence, connectivity checks, reports."""
