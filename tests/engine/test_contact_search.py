"""The contacts table's search finds what the operator typed, wildcard characters included
(the same LIKE helpers as the failed-jobs search); on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date

from engine.store.contact_browser import ContactQuery, contact_page, count_matching
from engine.store.db import Database
from engine.store.models import Contact


def test_search_treats_wildcards_as_text(db: Database) -> None:
    names = ["Ann_Lee", "AnnxLee", "100% Paid Ltd", "100 Paid", "Back\\slash"]
    with db.session() as session:
        session.add_all(Contact(name=name, phone=f"+25471200000{n}", pledge_cents=100,
                                paid_cents=0, due_date=date(2027, 1, 1))
                        for n, name in enumerate(names))
    with db.session() as session:
        def found(search: str) -> list[str]:
            query = ContactQuery(search=search)
            shown = [c.name for c in contact_page(session, query, 0, 100)]
            assert len(shown) == count_matching(session, query)
            return sorted(shown)

        assert found("ann_lee") == ["Ann_Lee"]
        assert found("100%") == ["100% Paid Ltd"]
        assert found("%") == ["100% Paid Ltd"]
        assert found("\\s") == ["Back\\slash"]
        assert found("k\\") == ["Back\\slash"]
        assert found("ann") == ["Ann_Lee", "AnnxLee"]  # plain text still matches any case
