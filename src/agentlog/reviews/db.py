"""The reviews database: DATABASE_URL (default `sqlite:///<var>/reviews.sqlite`), its tables and the
sample catalogue.

The sample data is idempotent per product: a product is inserted with its reviews only when no
product of that name exists, so a restart never duplicates reviews and never brings back one a
user deleted, and two processes starting together cannot both insert it (names are unique).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from sqlalchemy import Engine, create_engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agentlog.config import Settings
from agentlog.reviews.models import Base, Product, Review

SampleReview = tuple[str, int, str]

SAMPLE_CATALOGUE: tuple[tuple[str, str, float, tuple[SampleReview, ...]], ...] = (
    ("PrintForge Mini", "Compact desktop FDM 3D printer, sold assembled and calibrated; 180 mm build volume.", 349.0, (
        ("Dana K.", 5, "Printed my first part fifteen minutes after unboxing. Great quality for the price and very quiet."),
        ("Mark T.", 4, "Solid little printer with reliable bed levelling, but the build volume is small for cosplay parts."),
        ("Yossi L.", 2, "The nozzle clogged twice in the first week and support was slow to answer. Disappointing."),
        ("נועה ב.", 5, "מדפסת מעולה, שקטה ואיכותית. ההדפסות יוצאות מדויקות וממליצה בחום."),
        ("Priya S.", 4, "Easy to set up for my classroom; the kids love it. The spool holder feels flimsy."),
        ("Tom R.", 3, "Prints are fine once tuned, but the slicer profiles that ship with it are poor."),
    )),
    ("BrewMaster 360", "Bean-to-cup automatic coffee machine with 16 drink recipes and automatic milk frothing.", 899.0, (
        ("Alice M.", 5, "Excellent espresso and the milk froth is perfect. Worth every shekel."),
        ("Omer G.", 2, "Expensive, and the grinder is noisy in the morning. The coffee itself is good though."),
        ("Lena P.", 4, "Beautiful touchscreen and easy cleaning cycle, but the water tank is too small."),
        ("דני ר.", 3, "הקפה טוב אבל המכונה רועשת והמחיר יקר מדי."),
        ("Chris W.", 5, "Fast, reliable and the cappuccino beats my local cafe. Delivery arrived a day early."),
        ("Maya F.", 1, "Leaked water after two weeks and the replacement was delayed. Terrible service."),
    )),
    ("EvoPhone X", "6.4-inch flagship smartphone: AMOLED 120 Hz display, triple camera, 5,000 mAh battery.", 799.0, (
        ("Ben A.", 5, "Stunning screen and the camera takes amazing photos at night. Battery easily lasts two days."),
        ("Sara N.", 3, "Great display, but the phone gets hot while gaming and the battery drains fast then."),
        ("Eitan Z.", 4, "Fast performance and a clean interface. Charging is quick. A bit expensive."),
        ("רוני ש.", 2, "הסוללה חלשה והמכשיר מתחמם. המצלמה דווקא טובה."),
        ("Grace H.", 5, "Best phone I have owned. Smooth, bright screen and excellent build quality."),
        ("Ivan D.", 2, "The screen scratched in a week and customer support was not helpful."),
    )),
    ("VoltRider E2", "Foldable 500 W electric scooter with a 55 km range, dual brakes and 10-inch tyres.", 749.0, (
        ("Nadav C.", 5, "Comfortable ride, strong brakes and the battery range is as promised. Great commuter."),
        ("Julia B.", 4, "Folds quickly and the app is easy, but it is heavy to carry up stairs."),
        ("Ahmed K.", 2, "Battery died after three months and the warranty process was slow."),
        ("שירה מ.", 5, "קורקינט מעולה, נוח ומהיר. המשלוח הגיע מהר."),
        ("Paul V.", 3, "Good speed on flat roads but weak on hills, and the bell is annoying."),
        ("Kim L.", 4, "Sturdy frame and bright lights. Price is fair for the quality."),
    )),
)


def database_url(settings: Settings, env: Mapping[str, str] | None = None) -> str:
    """DATABASE_URL, else a SQLite file under var/. A bare `postgresql://` URL means psycopg 3, the
    driver agentlog installs (SQLAlchemy would otherwise look for psycopg2)."""
    url = (os.environ if env is None else env).get("DATABASE_URL") or f"sqlite:///{settings.var_dir / 'reviews.sqlite'}"
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def open_database(url: str) -> Engine:
    """An engine whose tables exist and hold at least the sample catalogue."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        os.makedirs(os.path.dirname(os.path.abspath(parsed.database)), exist_ok=True)
    engine = create_engine(url, pool_pre_ping=True)
    Base.metadata.create_all(engine)
    seed_sample_data(engine)
    return engine


def seed_sample_data(engine: Engine) -> int:
    """Insert the sample products missing by name, each with its reviews; returns how many."""
    added = 0
    for name, description, price, reviews in SAMPLE_CATALOGUE:
        with Session(engine) as session:
            if session.scalar(select(Product.id).where(Product.name == name)) is not None:
                continue
            product = Product(name=name, description=description, price=price)
            product.reviews = [Review(author=a, rating=r, content=c) for a, r, c in reviews]
            session.add(product)
            try:
                session.commit()
            except IntegrityError:  # another process inserted it first
                session.rollback()
                continue
            added += 1
    return added
