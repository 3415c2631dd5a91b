"""SQLAlchemy 2 ORM round trip on the embedded backend (issue 13): create_all
(and has_table), DECIMAL/DATETIME/BLOB values, rollback, reflection."""

from __future__ import annotations

import datetime
import decimal

import pytest

from tests.support import Fe

sqlalchemy = pytest.importorskip("sqlalchemy")
from sqlalchemy import orm  # noqa: E402


def test_sqlalchemy_orm_round_trip(fe: Fe, db: str) -> None:
    class Base(orm.DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = "items"
        id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
        name: orm.Mapped[str] = orm.mapped_column(sqlalchemy.String(30))
        price: orm.Mapped[decimal.Decimal] = orm.mapped_column(sqlalchemy.Numeric(10, 2))
        at: orm.Mapped[datetime.datetime] = orm.mapped_column(sqlalchemy.DateTime)
        data: orm.Mapped[bytes] = orm.mapped_column(sqlalchemy.LargeBinary)

    engine = sqlalchemy.create_engine(f"mysql+pymysql://root:@127.0.0.1:{fe.mysql_port}/{db}")
    try:
        Base.metadata.create_all(engine)
        Base.metadata.create_all(engine)  # has_table: the second is a no-op
        at = datetime.datetime(2024, 11, 4, 20, 18, 7)
        with orm.Session(engine) as session:
            session.add(Item(name="a", price=decimal.Decimal("12.34"), at=at, data=b"\x00\xff"))
            session.commit()
            session.add(Item(name="gone", price=decimal.Decimal("1"), at=at, data=b""))
            session.rollback()
            items = session.scalars(sqlalchemy.select(Item)).all()
            assert [(i.name, i.price, i.at, i.data) for i in items] == [
                ("a", decimal.Decimal("12.34"), at, b"\x00\xff")
            ]
        inspector = sqlalchemy.inspect(engine)
        assert inspector.has_table("items") and inspector.get_table_names() == ["items"]
        columns = {c["name"]: c for c in inspector.get_columns("items")}
        assert set(columns) == {"id", "name", "price", "at", "data"}
        assert isinstance(columns["price"]["type"], sqlalchemy.Numeric)
        reflected = sqlalchemy.Table("items", sqlalchemy.MetaData(), autoload_with=engine)
        assert [c.name for c in reflected.primary_key] == ["id"]
    finally:
        engine.dispose()
