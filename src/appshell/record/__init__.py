"""What ran: the journal every statement passes, and the nested code Python's audit hook sees."""
