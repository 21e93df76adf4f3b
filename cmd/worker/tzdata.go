package main

// Quiet hours need the IANA zone database; embed it so the worker works on
// images without /usr/share/zoneinfo.
import _ "time/tzdata"
