package synth

// Codes and displays below are facts of the terminologies named by their
// systems (LOINC, SNOMED CT, RxNorm, CVX, UCUM, HL7).

// concept is one Coding: a code from a code system with its display.
type concept struct{ system, code, display string }

const (
	sysSNOMED         = "http://snomed.info/sct"
	sysLOINC          = "http://loinc.org"
	sysRxNorm         = "http://www.nlm.nih.gov/research/umls/rxnorm"
	sysCVX            = "http://hl7.org/fhir/sid/cvx"
	sysUCUM           = "http://unitsofmeasure.org"
	sysSSN            = "http://hl7.org/fhir/sid/us-ssn"
	sysNPI            = "http://hl7.org/fhir/sid/us-npi"
	sysBCP47          = "urn:ietf:bcp:47"
	sysV2IdType       = "http://terminology.hl7.org/CodeSystem/v2-0203"
	sysActCode        = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	sysMarital        = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"
	sysRoleCode       = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
	sysParticipation  = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
	sysInterpretation = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
	sysObsCategory    = "http://terminology.hl7.org/CodeSystem/observation-category"
	sysCondCategory   = "http://terminology.hl7.org/CodeSystem/condition-category"
	sysCondClinical   = "http://terminology.hl7.org/CodeSystem/condition-clinical"
	sysCondVerif      = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
	sysAllergyClin    = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
	sysAllergyVerif   = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
	sysDiagService    = "http://terminology.hl7.org/CodeSystem/v2-0074"
	sysOrgType        = "http://terminology.hl7.org/CodeSystem/organization-type"
	sysPracRole       = "http://terminology.hl7.org/CodeSystem/practitioner-role"
	sysDegree         = "http://terminology.hl7.org/CodeSystem/v2-0360|2.7"
	sysCoverageClass  = "http://terminology.hl7.org/CodeSystem/coverage-class"
	sysSubscriberRel  = "http://terminology.hl7.org/CodeSystem/subscriber-relationship"
	sysClaimType      = "http://terminology.hl7.org/CodeSystem/claim-type"
	sysPriority       = "http://terminology.hl7.org/CodeSystem/processpriority"
	sysAdjudication   = "http://terminology.hl7.org/CodeSystem/adjudication"
	sysDischarge      = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
	sysDoseRateType   = "http://terminology.hl7.org/CodeSystem/dose-rate-type"
	sysDrugForm       = "http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm"
	sysPerformerFunc  = "http://terminology.hl7.org/CodeSystem/v2-0443"
)

var (
	idTypeMR  = concept{sysV2IdType, "MR", "Medical record number"}
	idTypeSS  = concept{sysV2IdType, "SS", "Social Security number"}
	idTypeMB  = concept{sysV2IdType, "MB", "Member Number"}
	idTypeNPI = concept{sysV2IdType, "NPI", "National provider identifier"}

	classAmbulatory = concept{sysActCode, "AMB", "ambulatory"}
	classEmergency  = concept{sysActCode, "EMER", "emergency"}
	classInpatient  = concept{sysActCode, "IMP", "inpatient encounter"}
	coverageHIP     = concept{sysActCode, "HIP", "health insurance plan policy"}

	primaryPerformer = concept{sysParticipation, "PPRF", "primary performer"}
	administering    = concept{sysPerformerFunc, "AP", "Administering Provider"}
	dischargeHome    = concept{sysDischarge, "home", "Home"}

	catVitalSigns = concept{sysObsCategory, "vital-signs", "Vital Signs"}
	catLaboratory = concept{sysObsCategory, "laboratory", "Laboratory"}
	catSocial     = concept{sysObsCategory, "social-history", "Social History"}
	catLab        = concept{sysDiagService, "LAB", "Laboratory"}

	condProblem   = concept{sysCondCategory, "problem-list-item", "Problem List Item"}
	condEncounter = concept{sysCondCategory, "encounter-diagnosis", "Encounter Diagnosis"}
	condActive    = concept{sysCondClinical, "active", "Active"}
	condResolved  = concept{sysCondClinical, "resolved", "Resolved"}
	condConfirmed = concept{sysCondVerif, "confirmed", "Confirmed"}

	allergyActive    = concept{sysAllergyClin, "active", "Active"}
	allergyConfirmed = concept{sysAllergyVerif, "confirmed", "Confirmed"}

	interpNormal = concept{sysInterpretation, "N", "Normal"}
	interpHigh   = concept{sysInterpretation, "H", "High"}
	interpLow    = concept{sysInterpretation, "L", "Low"}

	orgProvider = concept{sysOrgType, "prov", "Healthcare Provider"}
	orgPayer    = concept{sysOrgType, "pay", "Payer"}
	roleDoctor  = concept{sysPracRole, "doctor", "Doctor"}
	degreeMD    = concept{sysDegree, "MD", "Doctor of Medicine"}

	specialtyFamily    = concept{sysSNOMED, "419772000", "Family practice (qualifier value)"}
	specialtyGeneral   = concept{sysSNOMED, "394814009", "General practice (specialty) (qualifier value)"}
	specialtyEmergency = concept{sysSNOMED, "773568002", "Emergency medicine (specialty) (qualifier value)"}

	classGroup = concept{sysCoverageClass, "group", "Group"}
	classPlan  = concept{sysCoverageClass, "plan", "Plan"}
	relSelf    = concept{sysSubscriberRel, "self", "Self"}
	relChild   = concept{sysSubscriberRel, "child", "Child"}

	claimProfessional = concept{sysClaimType, "professional", "Professional"}
	claimInstitution  = concept{sysClaimType, "institutional", "Institutional"}
	priorityNormal    = concept{sysPriority, "normal", "Normal"}
	adjSubmitted      = concept{sysAdjudication, "submitted", "Submitted Amount"}
	adjEligible       = concept{sysAdjudication, "eligible", "Eligible Amount"}
	adjBenefit        = concept{sysAdjudication, "benefit", "Benefit Amount"}

	doseOrdered      = concept{sysDoseRateType, "ordered", "Ordered"}
	courseAcute      = concept{"http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy", "acute", "Short course (acute) therapy"}
	courseContinuous = concept{"http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy", "continuous", "Continuous long term therapy"}

	langEnglish    = concept{sysBCP47, "en-US", "English (United States)"}
	langSpanish    = concept{sysBCP47, "es", "Spanish"}
	langVietnamese = concept{sysBCP47, "vi", "Vietnamese"}
	langChinese    = concept{sysBCP47, "zh", "Chinese"}

	maritalMarried  = concept{sysMarital, "M", "Married"}
	maritalNever    = concept{sysMarital, "S", "Never Married"}
	maritalDivorced = concept{sysMarital, "D", "Divorced"}
	maritalWidowed  = concept{sysMarital, "W", "Widowed"}

	roleMother      = concept{sysRoleCode, "MTH", "mother"}
	roleFather      = concept{sysRoleCode, "FTH", "father"}
	roleBrother     = concept{sysRoleCode, "BRO", "brother"}
	roleSister      = concept{sysRoleCode, "SIS", "sister"}
	roleGrandmother = concept{sysRoleCode, "GRMTH", "grandmother"}
	roleGrandfather = concept{sysRoleCode, "GRFTH", "grandfather"}
)

// Encounter types (SNOMED CT).
var (
	encCheckUp   = concept{sysSNOMED, "185349003", "Encounter for check up (procedure)"}
	encWellChild = concept{sysSNOMED, "410620009", "Well child visit (procedure)"}
	encSymptom   = concept{sysSNOMED, "185345009", "Encounter for symptom (procedure)"}
	encFollowUp  = concept{sysSNOMED, "390906007", "Follow-up encounter (procedure)"}
	encEmergency = concept{sysSNOMED, "50849002", "Emergency room admission (procedure)"}
	encInpatient = concept{sysSNOMED, "32485007", "Hospital admission (procedure)"}
)

// Vital signs (LOINC codes of the FHIR vital signs profiles) and the
// smoking status observation.
var (
	vitalBP        = concept{sysLOINC, "85354-9", "Blood pressure panel with all children optional"}
	vitalSystolic  = concept{sysLOINC, "8480-6", "Systolic blood pressure"}
	vitalDiastolic = concept{sysLOINC, "8462-4", "Diastolic blood pressure"}
	vitalHeartRate = concept{sysLOINC, "8867-4", "Heart rate"}
	vitalRespRate  = concept{sysLOINC, "9279-1", "Respiratory rate"}
	vitalTemp      = concept{sysLOINC, "8310-5", "Body temperature"}
	vitalWeight    = concept{sysLOINC, "29463-7", "Body weight"}
	vitalHeight    = concept{sysLOINC, "8302-2", "Body height"}
	vitalBMI       = concept{sysLOINC, "39156-5", "Body mass index (BMI) [Ratio]"}
	smokingStatus  = concept{sysLOINC, "72166-2", "Tobacco smoking status"}

	smokerNever   = concept{sysSNOMED, "266919005", "Never smoked tobacco (finding)"}
	smokerFormer  = concept{sysSNOMED, "8517006", "Ex-smoker (finding)"}
	smokerCurrent = concept{sysSNOMED, "449868002", "Smokes tobacco daily (finding)"}
)

// labTest is one laboratory observation. Values and reference limits are
// integers in units of 10^-scale of the UCUM unit.
type labTest struct {
	code  concept
	unit  string // UCUM code, also used as the human-readable unit
	scale int
}

var (
	labGlucose      = labTest{concept{sysLOINC, "2339-0", "Glucose [Mass/volume] in Blood"}, "mg/dL", 0}
	labSodium       = labTest{concept{sysLOINC, "2951-2", "Sodium [Moles/volume] in Serum or Plasma"}, "mmol/L", 0}
	labPotassium    = labTest{concept{sysLOINC, "2823-3", "Potassium [Moles/volume] in Serum or Plasma"}, "mmol/L", 1}
	labCreatinine   = labTest{concept{sysLOINC, "2160-0", "Creatinine [Mass/volume] in Serum or Plasma"}, "mg/dL", 2}
	labHbA1c        = labTest{concept{sysLOINC, "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"}, "%", 1}
	labCholesterol  = labTest{concept{sysLOINC, "2093-3", "Cholesterol [Mass/volume] in Serum or Plasma"}, "mg/dL", 0}
	labTriglyceride = labTest{concept{sysLOINC, "2571-8", "Triglyceride [Mass/volume] in Serum or Plasma"}, "mg/dL", 0}
	labLDL          = labTest{concept{sysLOINC, "18262-6", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay"}, "mg/dL", 0}
	labHDL          = labTest{concept{sysLOINC, "2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma"}, "mg/dL", 0}
	labHemoglobin   = labTest{concept{sysLOINC, "718-7", "Hemoglobin [Mass/volume] in Blood"}, "g/dL", 1}
	labHematocrit   = labTest{concept{sysLOINC, "4544-3", "Hematocrit [Volume Fraction] of Blood by Automated count"}, "%", 1}
	labLeukocytes   = labTest{concept{sysLOINC, "6690-2", "Leukocytes [#/volume] in Blood by Automated count"}, "10*3/uL", 1}
	labPlatelets    = labTest{concept{sysLOINC, "777-3", "Platelets [#/volume] in Blood by Automated count"}, "10*3/uL", 0}

	panelBMP   = concept{sysLOINC, "51990-0", "Basic metabolic panel - Blood"}
	panelLipid = concept{sysLOINC, "57698-3", "Lipid panel with direct LDL - Serum or Plasma"}
	panelCBC   = concept{sysLOINC, "58410-2", "CBC panel - Blood by Automated count"}
)

// Medications (RxNorm clinical drugs).
type medication struct {
	code   concept
	form   concept // the unit of one dose
	sig    string  // dosage instruction text
	dose   int     // units of form per dose
	perDay int     // doses per day; 0 with asNeeded means "as needed" only
	every  int     // for as-needed doses: at most every this many hours
	asNeed bool
	days   int // course length for a short course; 0 for long-term use
}

var (
	formTablet  = concept{sysDrugForm, "TAB", "Tablet"}
	formCapsule = concept{sysDrugForm, "CAP", "Capsule"}
	formInhaler = concept{sysDrugForm, "MDINHL", "Metered Dose Inhaler"}
	formSpray   = concept{sysDrugForm, "SPRY", "Sprays"}
)

var (
	medLisinopril   = medication{concept{sysRxNorm, "314076", "lisinopril 10 MG Oral Tablet"}, formTablet, "Take 1 tablet by mouth once daily.", 1, 1, 0, false, 0}
	medAmlodipine   = medication{concept{sysRxNorm, "197361", "amlodipine 5 MG Oral Tablet"}, formTablet, "Take 1 tablet by mouth once daily.", 1, 1, 0, false, 0}
	medHCTZ         = medication{concept{sysRxNorm, "310798", "hydrochlorothiazide 25 MG Oral Tablet"}, formTablet, "Take 1 tablet by mouth every morning.", 1, 1, 0, false, 0}
	medSimvastatin  = medication{concept{sysRxNorm, "312961", "simvastatin 20 MG Oral Tablet"}, formTablet, "Take 1 tablet by mouth at bedtime.", 1, 1, 0, false, 0}
	medAtorvastatin = medication{concept{sysRxNorm, "259255", "atorvastatin 80 MG Oral Tablet"}, formTablet, "Take 1 tablet by mouth once daily.", 1, 1, 0, false, 0}
	medMetformin    = medication{concept{sysRxNorm, "860975", "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet"}, formTablet, "Take 1 tablet by mouth with the evening meal.", 1, 1, 0, false, 0}
	medAlbuterol    = medication{concept{sysRxNorm, "745679", "200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler"}, formInhaler, "Inhale 2 puffs every 4 to 6 hours as needed for wheezing.", 2, 0, 4, true, 0}
	medFluticasone  = medication{concept{sysRxNorm, "895994", "120 ACTUAT fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler"}, formInhaler, "Inhale 2 puffs twice daily; rinse mouth after use.", 2, 2, 0, false, 0}
	medFerrous      = medication{concept{sysRxNorm, "310325", "ferrous sulfate 325 MG Oral Tablet"}, formTablet, "Take 1 tablet by mouth once daily with orange juice.", 1, 1, 0, false, 0}
	medCitalopram   = medication{concept{sysRxNorm, "200371", "citalopram 20 MG Oral Tablet"}, formTablet, "Take 1 tablet by mouth once daily.", 1, 1, 0, false, 0}
	medWarfarin     = medication{concept{sysRxNorm, "855332", "warfarin sodium 5 MG Oral Tablet"}, formTablet, "Take 1 tablet by mouth once daily in the evening, or as directed by the anticoagulation clinic.", 1, 1, 0, false, 0}
	medDigoxin      = medication{concept{sysRxNorm, "197604", "digoxin 0.125 MG Oral Tablet"}, formTablet, "Take 1 tablet by mouth once daily.", 1, 1, 0, false, 0}
	medClopidogrel  = medication{concept{sysRxNorm, "309362", "clopidogrel 75 MG Oral Tablet"}, formTablet, "Take 1 tablet by mouth once daily.", 1, 1, 0, false, 0}
	medNitro        = medication{concept{sysRxNorm, "705129", "nitroglycerin 0.4 MG/ACTUAT Mucosal Spray"}, formSpray, "Spray 1 dose under the tongue at the onset of chest pain; may repeat every 5 minutes up to 3 doses.", 1, 0, 1, true, 0}
	medNaproxen     = medication{concept{sysRxNorm, "198014", "naproxen 500 MG Oral Tablet"}, formTablet, "Take 1 tablet by mouth twice daily with food as needed for joint pain.", 1, 2, 12, true, 0}
	medAlendronate  = medication{concept{sysRxNorm, "904419", "alendronic acid 10 MG Oral Tablet"}, formTablet, "Take 1 tablet by mouth every morning with a full glass of water; stay upright for 30 minutes.", 1, 1, 0, false, 0}
	medGalantamine  = medication{concept{sysRxNorm, "310436", "galantamine 4 MG Oral Tablet"}, formTablet, "Take 1 tablet by mouth twice daily with meals.", 1, 2, 0, false, 0}
	medFexofenadine = medication{concept{sysRxNorm, "997488", "fexofenadine hydrochloride 30 MG Oral Tablet"}, formTablet, "Take 1 tablet by mouth twice daily during allergy season.", 1, 2, 0, false, 0}

	medPenicillinV    = medication{concept{sysRxNorm, "834061", "penicillin V potassium 250 MG Oral Tablet"}, formTablet, "Take 1 tablet by mouth four times daily for 10 days.", 1, 4, 0, false, 10}
	medAmoxicillin    = medication{concept{sysRxNorm, "308182", "amoxicillin 250 MG Oral Capsule"}, formCapsule, "Take 1 capsule by mouth three times daily for 10 days.", 1, 3, 0, false, 10}
	medAmoxClav       = medication{concept{sysRxNorm, "562251", "amoxicillin 250 MG / clavulanate 125 MG Oral Tablet"}, formTablet, "Take 1 tablet by mouth three times daily for 10 days.", 1, 3, 0, false, 10}
	medAcetaminophen  = medication{concept{sysRxNorm, "313782", "acetaminophen 325 MG Oral Tablet"}, formTablet, "Take 2 tablets by mouth every 6 hours as needed for pain or fever.", 2, 0, 6, true, 7}
	medAcetaminophenC = medication{concept{sysRxNorm, "282464", "acetaminophen 160 MG Oral Tablet"}, formTablet, "Take 1 tablet by mouth every 6 hours as needed for fever.", 1, 0, 6, true, 5}
	medIbuprofen      = medication{concept{sysRxNorm, "310965", "ibuprofen 200 MG Oral Tablet"}, formTablet, "Take 2 tablets by mouth every 6 to 8 hours as needed for pain.", 2, 0, 6, true, 14}
	medNaproxenNa     = medication{concept{sysRxNorm, "849574", "naproxen sodium 220 MG Oral Tablet"}, formTablet, "Take 1 tablet by mouth every 12 hours as needed for pain.", 1, 0, 12, true, 14}
	medOxycodoneAPAP  = medication{concept{sysRxNorm, "1049221", "acetaminophen 325 MG / oxycodone hydrochloride 5 MG Oral Tablet"}, formTablet, "Take 1 tablet by mouth every 6 hours as needed for severe pain.", 1, 0, 6, true, 3}
	medPhenazopyrid   = medication{concept{sysRxNorm, "1094107", "phenazopyridine hydrochloride 100 MG Oral Tablet"}, formTablet, "Take 1 tablet by mouth three times daily after meals for 2 days.", 1, 3, 0, false, 2}
)

// Procedures (SNOMED CT); cost is the charge in cents.
type procedure struct {
	code concept
	mins int // duration
	cost int64
}

var (
	procMedRec       = procedure{concept{sysSNOMED, "430193006", "Medication reconciliation (procedure)"}, 15, 4500}
	procDepression   = procedure{concept{sysSNOMED, "171207006", "Depression screening (procedure)"}, 10, 3000}
	procNeeds        = procedure{concept{sysSNOMED, "710824005", "Assessment of health and social care needs (procedure)"}, 15, 3500}
	procMammography  = procedure{concept{sysSNOMED, "71651007", "Mammography (procedure)"}, 30, 24000}
	procColonoscopy  = procedure{concept{sysSNOMED, "73761001", "Colonoscopy (procedure)"}, 45, 185000}
	procSpirometry   = procedure{concept{sysSNOMED, "23426006", "Measurement of respiratory function (procedure)"}, 20, 9500}
	procThroatCult   = procedure{concept{sysSNOMED, "117015009", "Throat culture (procedure)"}, 5, 4000}
	procClavicleXray = procedure{concept{sysSNOMED, "168594001", "Plain X-ray of clavicle (procedure)"}, 15, 18000}
	procImmobilize   = procedure{concept{sysSNOMED, "274474001", "Bone immobilization (procedure)"}, 30, 32000}
	procSuture       = procedure{concept{sysSNOMED, "288086009", "Suture open wound (procedure)"}, 30, 45000}
	procChestXray    = procedure{concept{sysSNOMED, "399208008", "Plain X-ray of chest (procedure)"}, 15, 15000}
	procAppendectomy = procedure{concept{sysSNOMED, "80146002", "Appendectomy (procedure)"}, 90, 1250000}
	procPCI          = procedure{concept{sysSNOMED, "415070008", "Percutaneous coronary intervention (procedure)"}, 120, 2800000}
	procEcho         = procedure{concept{sysSNOMED, "433236007", "Transthoracic echocardiography (procedure)"}, 45, 120000}
)

// Vaccines (CVX).
var (
	vaxHepBPed   = concept{sysCVX, "08", "Hep B, adolescent or pediatric"}
	vaxDTaP      = concept{sysCVX, "20", "DTaP"}
	vaxIPV       = concept{sysCVX, "10", "IPV"}
	vaxHib       = concept{sysCVX, "49", "Hib (PRP-OMP)"}
	vaxPCV13     = concept{sysCVX, "133", "Pneumococcal conjugate PCV 13"}
	vaxRotavirus = concept{sysCVX, "119", "rotavirus, monovalent"}
	vaxMMR       = concept{sysCVX, "03", "MMR"}
	vaxVaricella = concept{sysCVX, "21", "varicella"}
	vaxHepAPed   = concept{sysCVX, "83", "Hep A, ped/adol, 2 dose"}
	vaxHPV       = concept{sysCVX, "62", "HPV, quadrivalent"}
	vaxMenACWY   = concept{sysCVX, "114", "meningococcal MCV4P"}
	vaxTdap      = concept{sysCVX, "115", "Tdap"}
	vaxTd        = concept{sysCVX, "113", "Td (adult) preservative free"}
	vaxZoster    = concept{sysCVX, "121", "zoster"}
	vaxPPSV23    = concept{sysCVX, "33", "pneumococcal polysaccharide vaccine, 23 valent"}
	vaxHepBAdult = concept{sysCVX, "43", "Hep B, adult"}
	vaxFlu       = concept{sysCVX, "140", "Influenza, seasonal, injectable, preservative free"}
	vaxCovidPfz  = concept{sysCVX, "208", "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 30 mcg/0.3mL dose"}
	vaxCovidMod  = concept{sysCVX, "207", "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 100 mcg/0.5mL dose"}
)

// Allergies (SNOMED CT findings) and reactions.
var (
	allergies = [...]struct {
		code     concept
		category string // AllergyIntolerance.category
	}{
		{concept{sysSNOMED, "91935009", "Allergy to peanuts (finding)"}, "food"},
		{concept{sysSNOMED, "91934008", "Allergy to nut (finding)"}, "food"},
		{concept{sysSNOMED, "300913006", "Shellfish allergy (finding)"}, "food"},
		{concept{sysSNOMED, "418689008", "Allergy to grass pollen (finding)"}, "environment"},
		{concept{sysSNOMED, "419263009", "Allergy to tree pollen (finding)"}, "environment"},
		{concept{sysSNOMED, "419474003", "Allergy to mould (finding)"}, "environment"},
		{concept{sysSNOMED, "232347008", "Dander (animal) allergy (finding)"}, "environment"},
		{concept{sysSNOMED, "232350006", "House dust mite allergy (finding)"}, "environment"},
		{concept{sysSNOMED, "300916003", "Latex allergy (finding)"}, "environment"},
	}
	reactions = [...]concept{
		{sysSNOMED, "247472004", "Wheal (finding)"},
		{sysSNOMED, "271807003", "Eruption of skin (disorder)"},
		{sysSNOMED, "267036007", "Dyspnea (finding)"},
		{sysSNOMED, "49727002", "Cough (finding)"},
		{sysSNOMED, "76067001", "Sneezing (finding)"},
		{sysSNOMED, "39579001", "Anaphylaxis (disorder)"},
	}
)

// Conditions a family member may have had.
var familyConditions = [...]concept{
	{sysSNOMED, "38341003", "Hypertensive disorder, systemic arterial (disorder)"},
	{sysSNOMED, "44054006", "Diabetes mellitus type 2 (disorder)"},
	{sysSNOMED, "22298006", "Myocardial infarction (disorder)"},
	{sysSNOMED, "230690007", "Cerebrovascular accident (disorder)"},
	{sysSNOMED, "254837009", "Malignant neoplasm of breast (disorder)"},
	{sysSNOMED, "363406005", "Malignant neoplasm of colon (disorder)"},
	{sysSNOMED, "26929004", "Alzheimer's disease (disorder)"},
	{sysSNOMED, "195967001", "Asthma (disorder)"},
}
