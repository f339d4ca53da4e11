#!/usr/bin/python3
"""crosscheck.py - core/base/cron.c against an independent implementation, Python's croniter
(Debian's python3-croniter), on a few thousand generated expressions (fixed seed).

Usage: crosscheck.py CRON_TOOL [COUNT]

Compared: 5-field expressions (croniter on the wall-clock time, zoneinfo for the instant) (lists, ranges, steps, names, Sunday as 0 and 7), in UTC and in
zones, from start times spread over 2020-2040. Left out where the two differ by design:
  - a step in day-of-month or day-of-week ('*/2'): cronie (and crescent) count such a field as
    starting with '*', so both must match; croniter treats it as restricted (either matches);
  - a day-of-week field that spans the whole week without '*' ('0-6', '1-7,0'): cronie counts it
    as restricted (with a restricted day-of-month, every day then matches), croniter as '*';
  - with a zone, instants within 3 hours of a DST change: crescent follows cronie (a skipped
    time fires once at the change, a repeated fixed time once), croniter does not.
"""
import datetime
import random
import subprocess
import sys
import zoneinfo

from croniter import croniter

tool = sys.argv[1]
count = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
rnd = random.Random(20261202)
zones = [None, None, "Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata"]
months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
days = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


def part(lo, hi, names=None, base=0, allow_step=True):
    k = rnd.random()
    def v():
        n = rnd.randint(lo, hi)
        if names and rnd.random() < 0.3 and 0 <= n - base < len(names):
            return names[n - base].upper() if rnd.random() < 0.5 else names[n - base]
        return str(n)
    if k < 0.35:
        return "*"
    if k < 0.5 and allow_step:
        return "*/" + str(rnd.randint(1, max(1, (hi - lo) // 2)))
    items = []
    for _ in range(rnd.randint(1, 3)):
        if rnd.random() < 0.4:
            a = rnd.randint(lo, hi)
            b = rnd.randint(a, hi)
            s = str(a) + "-" + str(b)
            if allow_step and rnd.random() < 0.3:
                s += "/" + str(rnd.randint(1, 5))
            items.append(s)
        else:
            items.append(v())
    return ",".join(items)


def expression():
    return " ".join([
        part(0, 59), part(0, 23),
        part(1, 31, allow_step=False) if rnd.random() < 0.5 else "*",
        part(1, 12, months, 1),
        part(0, 7, days, 0, allow_step=False) if rnd.random() < 0.5 else "*",
    ])


def near_dst(tz, t):
    z = zoneinfo.ZoneInfo(tz)
    a = datetime.datetime.fromtimestamp(t - 3 * 3600, z).utcoffset()
    b = datetime.datetime.fromtimestamp(t + 3 * 3600, z).utcoffset()
    return a != b


cases = []
for _ in range(count):
    tz = rnd.choice(zones)
    start = rnd.randint(1577836800, 2208988800)  # 2020 .. 2040
    cases.append((expression(), tz, start * 1000 + rnd.choice([0, 0, 500, 59999])))
inp = "".join(f"{e}\t{tz or '-'}\t{ms}\n" for e, tz, ms in cases)
out = subprocess.run([tool], input=inp, capture_output=True, text=True, timeout=300, check=True).stdout.splitlines()
def whole_week(field):
    if field.startswith("*"):
        return False
    seen = set()
    for item in field.split(","):
        rng, _, step = item.partition("/")
        a, _, b = rng.partition("-")
        conv = lambda x: days.index(x.lower()) if x.lower() in days else int(x)
        lo, hi = conv(a), conv(b) if b else conv(a)
        seen.update(v % 7 for v in range(lo, hi + 1, int(step) if step else 1))
    return len(seen) == 7


compared = skipped = bad = 0
for (e, tz, ms), got in zip(cases, out):
    if whole_week(e.split()[4]):
        skipped += 1
        continue
    # croniter runs on the naive wall-clock time (its own zone arithmetic across DST changes is
    # off by the change); Python's zoneinfo turns the wall time it gives back into an instant.
    z = zoneinfo.ZoneInfo(tz) if tz else datetime.timezone.utc
    start = datetime.datetime.fromtimestamp(ms / 1000, z).replace(tzinfo=None)
    try:
        wall = croniter(e, start).get_next(datetime.datetime)
        want = int(wall.replace(tzinfo=z).timestamp() * 1000)
    except Exception as ex:  # croniter refusing what crescent accepts is a finding too
        want = "error: " + str(ex)
    if tz and isinstance(want, int) and (near_dst(tz, want // 1000) or near_dst(tz, ms // 1000)):
        skipped += 1
        continue
    if tz and got.lstrip("-").isdigit() and near_dst(tz, int(got) // 1000):
        skipped += 1
        continue
    compared += 1
    if (got == "-1" or "never fires" in got) and isinstance(want, str) and "failed to find next date" in want:
        continue  # neither finds one (June 31st: crescent refuses it)
    if str(want) != got:
        bad += 1
        if bad <= 20:
            print(f"MISMATCH {e!r} tz={tz} after={ms}: crescent {got}, croniter {want}")
print(f"cron crosscheck: {compared} compared, {skipped} left out (DST changes, whole-week fields), {bad} mismatches")
sys.exit(1 if bad or len(out) != len(cases) or compared < count // 2 else 0)
