from django.contrib import admin

from billing.models import LedgerEntry, TeamBalance


class ReadOnlyAdmin(admin.ModelAdmin):
    """Money moves only through billing.services (ledger entry and balance in one transaction), never by
    editing a row here."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["id", "team", "kind", "amount", "balance_after", "idempotency_key", "created_by", "created_at"]
    list_filter = ["kind"]
    search_fields = ["team__slug", "idempotency_key", "reason"]
    list_select_related = ["team", "created_by"]
    ordering = ["-id"]


@admin.register(TeamBalance)
class TeamBalanceAdmin(ReadOnlyAdmin):
    list_display = ["team", "balance", "updated_at"]
    search_fields = ["team__slug"]
    list_select_related = ["team"]

