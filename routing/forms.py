from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from routing import selectors, services
from routing.models import Channel, Model

MODALITIES = [("text", _("Text")), ("image", _("Image")), ("audio", _("Audio")), ("video", _("Video"))]
# What a model produces: text (chat, messages) or embedding vectors (/v1/embeddings); the relay checks it.
OUTPUT_MODALITIES = [("text", _("Text")), ("image", _("Image")), ("audio", _("Audio")),
                     ("embeddings", _("Embeddings"))]


class ListField(forms.CharField):
    """A list of short strings typed comma- or line-separated."""

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list) else value

    def to_python(self, value):
        return [item.strip() for item in (value or "").replace("\n", ",").split(",") if item.strip()]


class CatalogModelForm(forms.ModelForm):
    """A catalog entry. Saved through routing.services.model_upsert (never form.save()): the gateway's
    catalog snapshot must be told."""

    aliases = ListField(label=_("Aliases"), required=False,
                        help_text=_("Provider-native names clients may send, comma-separated."))
    input_modalities = forms.MultipleChoiceField(label=_("Input"), choices=MODALITIES, required=False,
                                                 widget=forms.CheckboxSelectMultiple)
    output_modalities = forms.MultipleChoiceField(label=_("Output"), choices=OUTPUT_MODALITIES, required=False,
                                                  widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = Model
        fields = ["public_id", "display_name", "provider", "upstream_name", "aliases", "context_length",
                  "max_output_tokens", "input_modalities", "output_modalities", "supports_tools",
                  "supports_json_schema", "supports_vision", "enabled"]
        labels = {"public_id": _("Public ID"), "display_name": _("Display name"), "provider": _("Provider"),
                  "upstream_name": _("Upstream name"), "context_length": _("Context length"),
                  "max_output_tokens": _("Max output tokens"), "supports_tools": _("Tools"),
                  "supports_json_schema": _("JSON schema"), "supports_vision": _("Vision"),
                  "enabled": _("Enabled")}
        help_texts = {"public_id": _("provider/name, e.g. openai/gpt-4o-mini")}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:  # usage, prices and keys refer to the public id: it does not change
            self.fields["public_id"].disabled = True

    def clean_public_id(self):
        public_id = self.cleaned_data["public_id"].strip()
        if "/" not in public_id:
            raise ValidationError(_("Use provider/name, e.g. openai/gpt-4o-mini."))
        return public_id

    def upsert_fields(self) -> dict:
        return {name: self.cleaned_data[name] for name in self.Meta.fields}


class MappingField(forms.CharField):
    """Public model id → upstream name, one `public/id = upstream-name` per line."""

    widget = forms.Textarea(attrs={"rows": 3, "placeholder": "openai/gpt-4o-mini = gpt-4o-mini-2024-07-18"})

    def prepare_value(self, value):
        return "\n".join(f"{k} = {v}" for k, v in value.items()) if isinstance(value, dict) else value

    def to_python(self, value):
        mapping = {}
        for number, line in enumerate((value or "").splitlines(), 1):
            if not line.strip():
                continue
            public_id, sep, upstream = (part.strip() for part in line.partition("="))
            if not (sep and public_id and upstream) or any(c.isspace() for c in public_id + upstream):
                raise ValidationError(_("Line %(n)s: write each mapping as “public/id = upstream-name”.")
                                      % {"n": number})
            if public_id in mapping:
                raise ValidationError(_("Line %(n)s: %(model)s is mapped twice.") % {"n": number, "model": public_id})
            mapping[public_id] = upstream
        return mapping


class ChannelForm(forms.Form):
    """An upstream account: a platform channel (team None) or a team's own. The upstream key is write-only:
    never rendered back, blank keeps the stored one. Saved through routing.services (which validates again)."""

    name = forms.CharField(label=_("Name"), max_length=80)
    kind = forms.ChoiceField(label=_("Provider kind"), initial=Channel.OPENAI, choices=Channel.KINDS)
    base_url = forms.CharField(label=_("Base URL"), max_length=300,
                               help_text=_("http:// or https://, up to and including /v1, e.g. https://api.openai.com/v1"))
    api_key = forms.CharField(label=_("Upstream API key"), required=False, max_length=500, strip=True,
                              widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}))
    models = forms.ModelMultipleChoiceField(label=_("Models served"), queryset=Model.objects.none(),
                                            widget=forms.CheckboxSelectMultiple, required=False)
    model_mapping = MappingField(label=_("Upstream names"), required=False,
                                 help_text=_("One “public/id = upstream-name” per line, only where this channel's "
                                             "name differs from the model's."))
    priority = forms.IntegerField(label=_("Priority"), initial=0, min_value=-1000, max_value=1000,
                                  help_text=_("Higher is tried first."))
    weight = forms.IntegerField(label=_("Weight"), initial=1, min_value=1, max_value=1000,
                                help_text=_("Share of traffic among channels of the same priority."))
    max_concurrency = forms.IntegerField(label=_("Concurrency cap"), required=False, min_value=1, max_value=100_000,
                                         help_text=_("Requests in flight per gateway process; empty: no cap."))
    test_model = forms.ModelChoiceField(label=_("Test model"), queryset=Model.objects.none(), required=False,
                                        empty_label=_("The first model served"), to_field_name="public_id",
                                        help_text=_("What “Test now” and the scheduled probes ask."))
    status = forms.ChoiceField(label=_("Status"), initial=Channel.ENABLED, choices=Channel.STATUSES)
    # Provider metadata: what OpenRouter-style `provider` preferences of a request match against.
    provider_name = forms.CharField(label=_("Provider name"), required=False, max_length=60,
                                    help_text=_("Who serves this channel, e.g. OpenAI, Azure, DeepInfra; empty: "
                                                "the provider kind's name."))
    data_collection = forms.ChoiceField(label=_("Data retention"), initial="allow", required=False,
                                        choices=Channel.DATA_COLLECTION,
                                        help_text=_("Requests with data_collection “deny” skip channels that may "
                                                    "retain prompts."))
    zdr = forms.BooleanField(label=_("Zero data retention"), required=False,
                             help_text=_("The provider keeps nothing of a request (for requests with zdr)."))
    quantization = forms.ChoiceField(label=_("Quantization"), required=False,
                                     choices=[("", _("Unknown"))] + Channel.QUANTIZATIONS)

    def __init__(self, *args, channel: Channel | None = None, team=None, **kwargs):
        if channel is not None:
            kwargs["initial"] = {
                "name": channel.name, "kind": channel.kind, "base_url": channel.base_url,
                "models": list(channel.models.all()), "model_mapping": channel.model_mapping,
                "priority": channel.priority, "weight": channel.weight, "status": channel.status,
                "max_concurrency": channel.max_concurrency, "provider_name": channel.provider_name,
                "data_collection": channel.data_collection, "zdr": channel.zdr, "quantization": channel.quantization,
                "test_model": channel.test_model.public_id if channel.test_model_id else None}
        super().__init__(*args, **kwargs)
        self.channel, self.team = channel, team
        models = selectors.catalog_models()
        if team is not None:  # a team's channel serves the enabled models the team may use
            allowed = [public_id for public_id, _label in selectors.model_choices(team=team)]
            models = models.filter(public_id__in=allowed)
        self.fields["models"].queryset = models
        self.fields["test_model"].queryset = models
        if channel is not None:
            self.fields["api_key"].help_text = _("Stored encrypted (%(mask)s). Leave empty to keep it.") % {
                "mask": channel.api_key_mask or "…"}
        else:  # a new channel starts enabled
            self.fields["api_key"].required = True
            del self.fields["status"]

    def clean_base_url(self):
        url = services.clean_base_url(self.cleaned_data["base_url"])
        if url is None:
            raise ValidationError(_("Enter an http:// or https:// URL, up to and including /v1."))
        return url

    def clean(self):
        data = super().clean()
        known = {m.public_id for m in data.get("models") or ()}
        unknown = sorted(set(data.get("model_mapping") or {}) - known)
        if unknown:
            self.add_error("model_mapping", _("Not among this channel's models: %(models)s.")
                           % {"models": ", ".join(unknown)})
        test_model = data.get("test_model")
        if test_model is not None and test_model.public_id not in known:
            self.add_error("test_model", _("The test model must be one of the channel's models."))
        return data

    def service_fields(self) -> dict:
        """Keyword arguments for channel_create (new: enabled) or channel_update (blank key: kept)."""
        data = dict(self.cleaned_data)
        if self.channel is not None and not data.get("api_key"):
            data.pop("api_key")
        return data

    def save(self) -> Channel | None:
        """Create or update through the service; its field errors land on the form (None then)."""
        try:
            if self.channel is None:
                return services.channel_create(team=self.team, **self.service_fields())
            return services.channel_update(channel=self.channel, **self.service_fields())
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, messages)
            return None
