"""motcua subscriber kit: consume motcua events safely from outside this repository."""
