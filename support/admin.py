from django.contrib import admin

from support.models import Ticket, TicketEvent


class TicketEventInline(admin.TabularInline):
    model = TicketEvent
    extra = 0
    can_delete = False
    readonly_fields = ["kind", "author", "by_staff", "body", "from_status", "to_status", "assignee", "created_at"]

    def has_add_permission(self, request, obj=None):
        return False   # events are written by support.services only


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    """Read-mostly: writes go through the support console so they are redacted and audited."""

    list_display = ["id", "subject", "team", "status", "priority", "assignee", "created_at"]
    list_filter = ["status", "priority"]
    search_fields = ["subject", "request_id", "team__slug"]
    readonly_fields = [f.name for f in Ticket._meta.fields]
    inlines = [TicketEventInline]

    def has_add_permission(self, request):
        return False
