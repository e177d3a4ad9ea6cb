"""One way to write dates and times on every page (issue 31: three formats on one admin page before): ISO dates and
24-hour times, in UTC (TIME_ZONE). Django's own `en` formats ("Dec. 6, 2026, 7:56 p.m.") are replaced through
FORMAT_MODULE_PATH."""

DATE_FORMAT = "Y-m-d"
DATETIME_FORMAT = "Y-m-d H:i"
TIME_FORMAT = "H:i"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
MONTH_DAY_FORMAT = "F j"
YEAR_MONTH_FORMAT = "F Y"
