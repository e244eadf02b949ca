package records

// UnknownParamError is what an Indexer returns for a search parameter it
// does not support, so that the API can apply Prefer: handling.
type UnknownParamError struct {
	Param string
}

func (e *UnknownParamError) Error() string {
	return "unknown or unsupported search parameter " + e.Param
}
