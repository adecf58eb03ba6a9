"""The sign-in server's views: pages, the JSON API and forward-auth."""
