package synth

// encKind is the kind of an encounter, which decides its class, type,
// setting and what happens during it.
type encKind uint8

const (
	kWellness encKind = iota
	kSymptom
	kFollowUp
	kEmergency
	kInpatient
)

// condDef describes a condition the generator knows.
type condDef struct {
	code    concept
	chronic bool
	notes   []string // note templates (see words.go)

	// For acute conditions:
	setting    encKind      // where it is diagnosed
	minAge     int          // years, inclusive
	maxAge     int          // years, inclusive
	sex        byte         // 'f' or 'm' when only one sex gets it; 0 for both
	weight     int          // relative frequency among those that fit
	days       [2]int       // days from onset until resolved, low and high
	stay       [2]int       // inpatient stays: days in hospital, low and high
	fever      bool         // raises the temperature taken at the encounter
	infection  bool         // raises the white cell count
	sinceDay   int          // earliest day it can occur (COVID-19); 0 for any
	adultMeds  []medication // prescribed at diagnosis, adults
	childMeds  []medication // prescribed at diagnosis, under 12
	procs      []procedure  // done at the diagnosing encounter
	leadsTo    *condDef     // a chronic condition it reveals (MI reveals coronary disease)
	afterwards *condDef     // a history-of condition recorded at discharge
}

// Chronic conditions, by index into chronicDefs.
const (
	chHypertension = iota
	chHyperlipidemia
	chDiabetes
	chPrediabetes
	chObesity
	chAsthma
	chCKD
	chAnemia
	chDepression
	chCOPD
	chAFib
	chCHD
	chOsteoarthritis
	chOsteoporosis
	chAlzheimers
	chRhinitis
	numChronic
)

var chronicDefs = [numChronic]condDef{
	chHypertension:   {code: concept{sysSNOMED, "38341003", "Hypertensive disorder, systemic arterial (disorder)"}, chronic: true, notes: notesChronic[:]},
	chHyperlipidemia: {code: concept{sysSNOMED, "55822004", "Hyperlipidemia (disorder)"}, chronic: true, notes: notesChronic[:]},
	chPrediabetes:    {code: concept{sysSNOMED, "15777000", "Prediabetes (finding)"}, chronic: true, notes: notesChronic[:]},
	chDiabetes:       {code: concept{sysSNOMED, "44054006", "Diabetes mellitus type 2 (disorder)"}, chronic: true, notes: notesChronic[:]},
	chObesity:        {code: concept{sysSNOMED, "162864005", "Body mass index 30+ - obesity (finding)"}, chronic: true, notes: notesChronic[:]},
	chAsthma:         {code: concept{sysSNOMED, "195967001", "Asthma (disorder)"}, chronic: true, notes: notesChronic[:]},
	chCKD:            {code: concept{sysSNOMED, "433144002", "Chronic kidney disease stage 3 (disorder)"}, chronic: true, notes: notesChronic[:]},
	chAnemia:         {code: concept{sysSNOMED, "271737000", "Anemia (disorder)"}, chronic: true, notes: notesChronic[:]},
	chDepression:     {code: concept{sysSNOMED, "35489007", "Depressive disorder (disorder)"}, chronic: true, notes: notesGeneral[:]},
	chCOPD:           {code: concept{sysSNOMED, "13645005", "Chronic obstructive lung disease (disorder)"}, chronic: true, notes: notesChronic[:]},
	chAFib:           {code: concept{sysSNOMED, "49436004", "Atrial fibrillation (disorder)"}, chronic: true, notes: notesChronic[:]},
	chCHD:            {code: concept{sysSNOMED, "53741008", "Coronary arteriosclerosis (disorder)"}, chronic: true, notes: notesChronic[:]},
	chOsteoarthritis: {code: concept{sysSNOMED, "239872002", "Osteoarthritis of hip (disorder)"}, chronic: true, notes: notesChronic[:]},
	chOsteoporosis:   {code: concept{sysSNOMED, "64859006", "Osteoporosis (disorder)"}, chronic: true, notes: notesChronic[:]},
	chAlzheimers:     {code: concept{sysSNOMED, "26929004", "Alzheimer's disease (disorder)"}, chronic: true, notes: notesGeneral[:]},
	chRhinitis:       {code: concept{sysSNOMED, "232353008", "Perennial allergic rhinitis with seasonal variation (disorder)"}, chronic: true, notes: notesRespiratory[:]},
}

var historyOfAppendectomyDef = condDef{code: concept{sysSNOMED, "428251008", "History of appendectomy (situation)"}, chronic: true, notes: notesGeneral[:]}

// covidStart is the first day on which COVID-19 is diagnosed: 2020-03-01.
var covidStart = daysFromCivil(2020, 3, 1)

var acuteDefs = []condDef{
	{code: concept{sysSNOMED, "444814009", "Viral sinusitis (disorder)"}, setting: kSymptom, maxAge: 120, weight: 10, days: [2]int{7, 21},
		notes: notesRespiratory[:], adultMeds: []medication{medAcetaminophen}, childMeds: []medication{medAcetaminophenC}},
	{code: concept{sysSNOMED, "195662009", "Acute viral pharyngitis (disorder)"}, setting: kSymptom, maxAge: 120, weight: 8, days: [2]int{5, 14}, fever: true,
		notes: notesRespiratory[:], adultMeds: []medication{medAcetaminophen}, childMeds: []medication{medAcetaminophenC}},
	{code: concept{sysSNOMED, "10509002", "Acute bronchitis (disorder)"}, setting: kSymptom, maxAge: 120, weight: 7, days: [2]int{14, 28},
		notes: notesRespiratory[:]},
	{code: concept{sysSNOMED, "43878008", "Streptococcal sore throat (disorder)"}, setting: kSymptom, minAge: 3, maxAge: 45, weight: 5, days: [2]int{7, 12}, fever: true, infection: true,
		notes: notesRespiratory[:], adultMeds: []medication{medPenicillinV}, childMeds: []medication{medPenicillinV}, procs: []procedure{procThroatCult}},
	{code: concept{sysSNOMED, "65363002", "Otitis media (disorder)"}, setting: kSymptom, maxAge: 10, weight: 12, days: [2]int{7, 14}, fever: true, infection: true,
		notes: notesGeneral[:], adultMeds: []medication{medAmoxicillin}, childMeds: []medication{medAmoxicillin}},
	{code: concept{sysSNOMED, "75498004", "Acute bacterial sinusitis (disorder)"}, setting: kSymptom, minAge: 18, maxAge: 120, weight: 4, days: [2]int{10, 21}, infection: true,
		notes: notesRespiratory[:], adultMeds: []medication{medAmoxClav}},
	{code: concept{sysSNOMED, "38822007", "Cystitis (disorder)"}, setting: kSymptom, minAge: 15, maxAge: 120, sex: 'f', weight: 5, days: [2]int{3, 10},
		notes: notesGeneral[:], adultMeds: []medication{medPhenazopyrid}},
	{code: concept{sysSNOMED, "840539006", "COVID-19"}, setting: kSymptom, maxAge: 120, weight: 6, days: [2]int{10, 28}, fever: true, sinceDay: covidStart,
		notes: notesRespiratory[:], adultMeds: []medication{medAcetaminophen}, childMeds: []medication{medAcetaminophenC}},

	{code: concept{sysSNOMED, "44465007", "Sprain of ankle (disorder)"}, setting: kEmergency, minAge: 5, maxAge: 90, weight: 8, days: [2]int{14, 42},
		notes: notesInjury[:], adultMeds: []medication{medIbuprofen}, childMeds: []medication{medIbuprofen}},
	{code: concept{sysSNOMED, "58150001", "Fracture of clavicle (disorder)"}, setting: kEmergency, minAge: 2, maxAge: 90, weight: 3, days: [2]int{42, 84},
		notes: notesInjury[:], adultMeds: []medication{medOxycodoneAPAP}, childMeds: []medication{medAcetaminophenC}, procs: []procedure{procClavicleXray, procImmobilize}},
	{code: concept{sysSNOMED, "62106007", "Concussion with no loss of consciousness (disorder)"}, setting: kEmergency, minAge: 4, maxAge: 90, weight: 4, days: [2]int{7, 28},
		notes: notesInjury[:], adultMeds: []medication{medAcetaminophen}, childMeds: []medication{medAcetaminophenC}},
	{code: concept{sysSNOMED, "283385000", "Laceration of thigh (disorder)"}, setting: kEmergency, minAge: 3, maxAge: 90, weight: 3, days: [2]int{10, 21},
		notes: notesInjury[:], procs: []procedure{procSuture}},
	{code: concept{sysSNOMED, "370247008", "Facial laceration (disorder)"}, setting: kEmergency, minAge: 1, maxAge: 90, weight: 3, days: [2]int{7, 14},
		notes: notesInjury[:], procs: []procedure{procSuture}},
	{code: concept{sysSNOMED, "195662009", "Acute viral pharyngitis (disorder)"}, setting: kEmergency, maxAge: 120, weight: 2, days: [2]int{5, 14}, fever: true,
		notes: notesRespiratory[:], adultMeds: []medication{medAcetaminophen}, childMeds: []medication{medAcetaminophenC}},

	{code: concept{sysSNOMED, "233604007", "Pneumonia (disorder)"}, setting: kInpatient, maxAge: 120, weight: 5, days: [2]int{14, 35}, stay: [2]int{3, 7}, fever: true, infection: true,
		notes: notesRespiratory[:], adultMeds: []medication{medAmoxClav}, childMeds: []medication{medAmoxicillin}, procs: []procedure{procChestXray}},
	{code: concept{sysSNOMED, "74400008", "Appendicitis (disorder)"}, setting: kInpatient, minAge: 6, maxAge: 60, weight: 4, days: [2]int{14, 28}, stay: [2]int{1, 3}, fever: true, infection: true,
		notes: notesGeneral[:], adultMeds: []medication{medOxycodoneAPAP}, childMeds: []medication{medAcetaminophenC}, procs: []procedure{procAppendectomy}, afterwards: &historyOfAppendectomyDef},
	{code: concept{sysSNOMED, "22298006", "Myocardial infarction (disorder)"}, setting: kInpatient, minAge: 45, maxAge: 120, weight: 3, days: [2]int{28, 56}, stay: [2]int{2, 5},
		notes: notesGeneral[:], procs: []procedure{procEcho, procPCI}, leadsTo: &chronicDefs[chCHD]},
}
