from django.urls import URLResolver, path, re_path
from django.urls.resolvers import RoutePattern

from routing.relay import gemini_views as relay_gemini
from routing.relay import metrics as relay_metrics
from routing.relay import openrouter_views as relay_openrouter
from routing.relay import responses_views as relay_responses
from routing.relay import views as relay

urlpatterns = [
    # The relay (OpenAI format). Only this file imports the relay.
    path("v1/chat/completions", relay.chat_completions),
    path("v1/embeddings", relay.embeddings),
    path("v1/messages", relay.messages),
    path("v1/messages/count_tokens", relay.count_tokens),
    path("v1/responses", relay_responses.create),
    path("v1/responses/input_tokens", relay_responses.input_tokens),
    path("v1/responses/<str:response_id>", relay_responses.response_detail),
    path("v1/responses/<str:response_id>/input_items", relay_responses.input_items),
    path("v1/models", relay_gemini.v1_models),   # OpenAI's list (Gemini's to a Gemini client)
    path("v1/models/<path:model_id>", relay_gemini.v1_model),   # ids have a slash: openai/gpt-4o-mini
    path("v1/key", relay.key_info),
    # Native Gemini (Gemini CLI, google-genai); model names may hold a slash (models/google/gemini-2.5-flash).
    re_path(r"^v1beta/models/(?P<model>.+):(?P<method>[A-Za-z]+)$", relay_gemini.model_action),   # route:x too
    path("v1beta/models", relay_gemini.list_models),
    re_path(r"^v1beta/models/(?P<model_id>.+)$", relay_gemini.get_model),
    re_path(r"^v1beta(?:/.*)?$", relay_gemini.unknown_endpoint),
    path("v1/generation", relay.generation),
    # OpenRouter's base URL (/api/v1): OpenAI-shaped routes answer errors in OpenRouter's shape, Messages and
    # Responses in their own.
    path("api/v1/chat/completions", relay_openrouter.chat_completions),
    path("api/v1/embeddings", relay_openrouter.embeddings),
    path("api/v1/messages", relay.messages),
    path("api/v1/messages/count_tokens", relay.count_tokens),
    path("api/v1/responses", relay_responses.create),
    path("api/v1/responses/input_tokens", relay_responses.input_tokens),
    path("api/v1/responses/<str:response_id>", relay_responses.response_detail),
    path("api/v1/responses/<str:response_id>/input_items", relay_responses.input_items),
    path("api/v1/models", relay_openrouter.list_models),
    path("api/v1/models/<path:model_id>", relay_openrouter.retrieve_model),
    path("api/v1/key", relay_openrouter.key_info),
    path("api/v1/credits", relay_openrouter.credits),
    path("api/v1/generation", relay_openrouter.generation),
    re_path(r"^api/v1(?:/.*)?$", relay_openrouter.unknown_endpoint),
    path("healthz", relay.healthz),
    path("readyz", relay.readyz),
    path("metrics", relay_metrics.metrics_view, name="metrics"),
    # Anything else under an API-looking path answers JSON naming the right base URL.
    re_path(r"^(?:v1|v1beta)(?:/.*)?$", relay.unknown_endpoint),
    re_path(r"^(?:chat/completions|completions|models|embeddings|messages|responses)/?$", relay.unknown_endpoint),
    # Console, management API, admin (gateway_site/console_urls.py): a URLResolver with the module's name, not
    # include(), which would import it now; it is imported when a path first gets this far.
    URLResolver(RoutePattern("", is_endpoint=False), "gateway_site.console_urls"),   # as path("", include())
]

handler400 = "gateway_site.views.bad_request"
handler404 = "gateway_site.views.not_found"
handler500 = "gateway_site.views.server_error"
