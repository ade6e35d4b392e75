"""Data every layer agrees on, below all of them: the request's scope (`scope`), the proxied
routes (`proxied`), the JSON API's models (`models`), and what the OpenAPI document says
routes share (`security`)."""
