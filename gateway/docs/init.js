// The API reference: Swagger UI (vendored in swagger-ui/, served by the
// gateway) over the gateway's own /openapi.json. Nothing is fetched from
// another host: no validator badge, no remote spec.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  validatorUrl: null,
  deepLinking: true,
  tryItOutEnabled: false,
  persistAuthorization: false,
});
