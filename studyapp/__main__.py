"""``python -m studyapp``: the same as the ``studyapp`` command."""

from studyapp.entry import main

if __name__ == "__main__":
    main()
