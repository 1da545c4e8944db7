// /docs: render the server's own /openapi.json with the vendored Swagger UI
// (static/vendor/swagger-ui, from the swagger-ui-dist npm package). Nothing is
// fetched from anywhere but this server: the spec validator badge, which
// would call an external service, is off.
/* global SwaggerUIBundle */
(function () {
  'use strict';
  window.ui = SwaggerUIBundle({
    url: new URL('openapi.json', document.baseURI).href,
    dom_id: '#swagger-ui',
    presets: [SwaggerUIBundle.presets.apis],
    layout: 'BaseLayout',
    deepLinking: true,
    docExpansion: 'list',
    defaultModelsExpandDepth: 0,
    displayRequestDuration: true,
    validatorUrl: null,
    tryItOutEnabled: false,
  });
})();
