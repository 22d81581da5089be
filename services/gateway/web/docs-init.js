/* Starts Swagger UI on /docs (a file, not an inline script: the CSP allows scripts from this origin only). */
"use strict";
window.addEventListener("load", function () {
  var node = document.getElementById("swagger-ui");
  window.ui = window.SwaggerUIBundle({
    url: node.getAttribute("data-openapi-url") || "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
