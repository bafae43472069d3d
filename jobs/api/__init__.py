"""What the API's clients call: views, the request and response shapes, who may call and how
often, the error body, the OpenAPI schema and the CSV export."""
