"""English dates as TinyRAG has always shown them: "1 Mar 2024, 17:05" (day, month, year,
24-hour clock), where Django's English would say "March 1, 2024, 5:05 p.m."."""

DATE_FORMAT = "j M Y"
TIME_FORMAT = "H:i"
DATETIME_FORMAT = "j M Y, H:i"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
