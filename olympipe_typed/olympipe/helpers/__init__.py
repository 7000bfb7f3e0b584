"""olympipe's ``olympipe.helpers``."""
