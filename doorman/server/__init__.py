"""The sign-in server: ``doorman serve``, its pages, JSON API and forward-auth endpoint."""
