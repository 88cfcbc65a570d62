"""The fleet portal: accounts, users in roles, vehicles, services, a JSON API and a dashboard."""
