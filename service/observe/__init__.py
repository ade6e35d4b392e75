"""What the service tells its operators: logs (`logs`), metrics (`metrics`), auth and audit
events (`events`), traces (`tracing`)."""
